"""Scoped reads of keys and of the routing groups an account may give them."""

from django.db.models import Q, QuerySet
from django.http import Http404

from accounts.models import Account, Membership
from accounts.permissions import ALL_PROJECTS
from catalogue.models import RoutingGroup
from keys.models import ApiKey, ManagementKey


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
        "group", "project", "created_by", "created_via_key"
    )


def api_keys_visible_to(membership: Membership) -> QuerySet[ApiKey]:
    """The keys a console user may see: every key of the account for owners, admins and
    finance; the keys of the projects they belong to for developers and viewers."""
    keys = api_keys_for_account(membership.account)
    if membership.can(ALL_PROJECTS):
        return keys
    return keys.filter(project_id__in=membership.project_ids())


def api_key_get_for_member(*, membership: Membership, public_id: str) -> ApiKey:
    """A key the member may see; a key of a project they are not in is a 404, like another
    account's."""
    key = api_keys_visible_to(membership).filter(public_id=public_id).first()
    if key is None:
        raise Http404("No such key.")
    return key


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
