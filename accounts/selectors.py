"""Scoped reads of accounts, memberships and invitations."""

from django.db.models import Q, QuerySet
from django.http import Http404

from accounts.models import Account, ApiKey, AuditEvent, Invitation, ManagementKey, Membership, User
from accounts.services import token_digest
from catalogue.models import RoutingGroup

SESSION_ACCOUNT_KEY = "bytespike_account"


def memberships_for_user(user: User) -> list[Membership]:
    return list(
        Membership.objects.filter(user=user).select_related("account").order_by("account__name")
    )


def membership_current(request) -> Membership | None:
    """The membership of the account selected in this session, else the user's first one."""
    chosen = request.session.get(SESSION_ACCOUNT_KEY)
    memberships = Membership.objects.filter(user=request.user).select_related("account", "user")
    membership = None
    if chosen:
        membership = memberships.filter(account__public_id=chosen).first()
    if membership is None:
        membership = memberships.order_by("created_at", "id").first()
        if membership is not None:
            request.session[SESSION_ACCOUNT_KEY] = membership.account.public_id
    return membership


def membership_get_for_account(*, account: Account, public_id: str) -> Membership:
    membership = (
        Membership.objects.select_related("user").filter(account=account, public_id=public_id)
    ).first()
    if membership is None:
        raise Http404("No such member.")
    return membership


def memberships_for_account(account: Account) -> list[Membership]:
    return list(Membership.objects.filter(account=account).select_related("user"))


def invitation_get_for_account(*, account: Account, public_id: str) -> Invitation:
    invitation = Invitation.objects.filter(account=account, public_id=public_id).first()
    if invitation is None:
        raise Http404("No such invitation.")
    return invitation


def invitations_pending_for_account(account: Account) -> list[Invitation]:
    return list(
        Invitation.objects.filter(
            account=account, accepted_at__isnull=True, revoked_at__isnull=True
        ).select_related("invited_by")
    )


def invitation_get_by_token(token: str) -> Invitation:
    invitation = (
        Invitation.objects.select_related("account", "invited_by")
        .filter(token_digest=token_digest(token))
        .first()
    )
    if invitation is None:
        raise Http404("This invitation link is not valid.")
    return invitation


def audit_events_for_account(account: Account) -> QuerySet[AuditEvent]:
    """Newest first; slice it for a summary, page it for the log."""
    return AuditEvent.objects.filter(account=account).select_related("actor")


# --- Routing groups and keys -----------------------------------------------------------------


def groups_available(account: Account) -> QuerySet[RoutingGroup]:
    """Public groups plus the exclusive ones granted to the account."""
    return RoutingGroup.objects.filter(Q(exclusive=False) | Q(grants__account=account)).distinct()


def group_is_available(*, account: Account, group: RoutingGroup) -> bool:
    return not group.exclusive or group.grants.filter(account=account).exists()


def group_get_available(*, account: Account, group_id) -> RoutingGroup | None:
    try:
        return groups_available(account).get(pk=int(group_id))
    except (RoutingGroup.DoesNotExist, TypeError, ValueError):
        return None


def api_keys_for_account(account: Account) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(account=account, deleted_at__isnull=True).select_related(
        "group", "created_by", "created_via_key"
    )


def api_key_get_for_account(*, account: Account, public_id: str) -> ApiKey:
    key = api_keys_for_account(account).filter(public_id=public_id).first()
    if key is None:
        raise Http404("No such key.")
    return key


def management_keys_for_account(account: Account) -> QuerySet[ManagementKey]:
    return ManagementKey.objects.filter(account=account).select_related("created_by")


def management_key_get_for_account(*, account: Account, public_id: str) -> ManagementKey:
    key = management_keys_for_account(account).filter(public_id=public_id).first()
    if key is None:
        raise Http404("No such key.")
    return key
