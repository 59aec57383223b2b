"""What each role may do. One table, read by views, templates and services alike."""

from accounts.models import Role

VIEW = "view"  # read pages and reports
USE_PLAYGROUND = "use_playground"
MANAGE_OWN_KEYS = "manage_own_keys"
MANAGE_ALL_KEYS = "manage_all_keys"
MANAGE_MANAGEMENT_KEYS = "manage_management_keys"
MANAGE_WEBHOOKS = "manage_webhooks"
MANAGE_ALERTS = "manage_alerts"
VIEW_AUDIT = "view_audit"
MANAGE_BILLING = "manage_billing"
VIEW_STATEMENTS = "view_statements"
TOP_UP = "top_up"  # buy credits with a payment (billing/topups.py)
MANAGE_MEMBERS = "manage_members"
MANAGE_ACCOUNT = "manage_account"
SET_TIME_ZONE = "set_time_zone"  # the zone reports read days and months in

_EVERYONE = {Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER}
_BUILDERS = {Role.OWNER, Role.ADMIN, Role.DEVELOPER}
_ADMINS = {Role.OWNER, Role.ADMIN}
_OWNERS = {Role.OWNER}

ROLES_WITH = {
    VIEW: _EVERYONE,
    USE_PLAYGROUND: _BUILDERS,
    MANAGE_OWN_KEYS: _BUILDERS,
    MANAGE_ALL_KEYS: _ADMINS,
    MANAGE_MANAGEMENT_KEYS: _ADMINS,
    MANAGE_WEBHOOKS: _ADMINS,
    MANAGE_ALERTS: _ADMINS,
    VIEW_AUDIT: _ADMINS,
    MANAGE_BILLING: _OWNERS,
    VIEW_STATEMENTS: _OWNERS,
    TOP_UP: _ADMINS,
    MANAGE_MEMBERS: _OWNERS,
    MANAGE_ACCOUNT: _OWNERS,
    SET_TIME_ZONE: _ADMINS,
}

ROLE_SUMMARIES = {
    Role.OWNER: "Everything, including members and billing.",
    Role.ADMIN: "All keys, management keys, webhooks and alerts.",
    Role.DEVELOPER: "Own keys and the playground.",
    Role.VIEWER: "Read-only: usage and wallet.",
}


def role_can(role: str, permission: str) -> bool:
    return role in ROLES_WITH[permission]


def can_manage_key(membership, key) -> bool:
    """Admins and owners manage every key; developers only the keys they created."""
    if membership.can(MANAGE_ALL_KEYS):
        return True
    return membership.can(MANAGE_OWN_KEYS) and key.created_by_id == membership.user_id


def can_manage_task(membership, task) -> bool:
    """A task is spent from its key, so cancelling it is using that key: whoever may manage the
    key may manage its tasks. A task whose key is gone is left to admins and owners."""
    if membership.can(MANAGE_ALL_KEYS):
        return True
    return task.api_key is not None and can_manage_key(membership, task.api_key)
