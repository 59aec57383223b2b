"""Scoped reads of accounts, memberships and invitations."""

from django.db.models import QuerySet
from django.http import Http404

from accounts.models import (
    Account,
    AuditEvent,
    Invitation,
    Membership,
    Project,
    ProjectMembership,
    User,
)
from accounts.permissions import ALL_PROJECTS
from accounts.services import token_digest

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


def audit_events_outside_accounts(action_prefix: str) -> QuerySet[AuditEvent]:
    """Staff operations on what every account shares (``channel.``: upstream channels), newest
    first; no account's page shows them."""
    return AuditEvent.objects.filter(account=None, action__startswith=action_prefix).select_related(
        "actor"
    )


def projects_for_account(account: Account) -> QuerySet[Project]:
    """The account's projects (not deleted), the default one first, then by name."""
    return Project.objects.filter(account=account, deleted_at=None)


def projects_visible_to(membership: Membership) -> QuerySet[Project]:
    """Every project for owners, admins and finance; the projects they belong to for others."""
    projects = projects_for_account(membership.account)
    if membership.can(ALL_PROJECTS):
        return projects
    return projects.filter(memberships__membership=membership)


def project_get_for_account(*, account: Account, public_id: str) -> Project:
    project = projects_for_account(account).filter(public_id=public_id).first()
    if project is None:
        raise Http404("No such project.")
    return project


def project_get_for_member(*, membership: Membership, public_id: str) -> Project:
    """A project the member may see; any other (another account's, or one of this account's
    they are not in) is a 404, which does not confirm it exists."""
    project = projects_visible_to(membership).filter(public_id=public_id).first()
    if project is None:
        raise Http404("No such project.")
    return project


def project_members(project: Project) -> list[ProjectMembership]:
    return list(
        ProjectMembership.objects.filter(project=project).select_related("membership__user")
    )


def project_membership_get(*, project: Project, member_public_id: str) -> ProjectMembership:
    row = (
        ProjectMembership.objects.filter(project=project, membership__public_id=member_public_id)
        .select_related("membership__user")
        .first()
    )
    if row is None:
        raise Http404("No such member in this project.")
    return row
