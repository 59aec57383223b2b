"""What each role may do. One table, read by views, templates and services alike."""

from accounts.models import ProjectRole, Role

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
# Every project of the account, whatever the member's project roles; the other roles reach
# only the projects they are members of.
ALL_PROJECTS = "all_projects"
MANAGE_PROJECTS = "manage_projects"  # create, delete, set budgets
MANAGE_PROJECT = "manage_project"  # rename, add and remove members (project admins too)

_EVERYONE = {Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER, Role.FINANCE}
_BUILDERS = {Role.OWNER, Role.ADMIN, Role.DEVELOPER}
_ADMINS = {Role.OWNER, Role.ADMIN}
_OWNERS = {Role.OWNER}
_MONEY = {Role.OWNER, Role.FINANCE}

ROLES_WITH = {
    VIEW: _EVERYONE,
    USE_PLAYGROUND: _BUILDERS,
    MANAGE_OWN_KEYS: _BUILDERS,
    MANAGE_ALL_KEYS: _ADMINS,
    MANAGE_MANAGEMENT_KEYS: _ADMINS,
    MANAGE_WEBHOOKS: _ADMINS,
    MANAGE_ALERTS: _ADMINS,
    VIEW_AUDIT: _ADMINS,
    MANAGE_BILLING: _MONEY,
    VIEW_STATEMENTS: _MONEY,
    TOP_UP: _ADMINS | {Role.FINANCE},
    MANAGE_MEMBERS: _OWNERS,
    MANAGE_ACCOUNT: _OWNERS,
    SET_TIME_ZONE: _ADMINS,
    ALL_PROJECTS: {Role.OWNER, Role.ADMIN, Role.FINANCE},
    MANAGE_PROJECTS: _ADMINS,
    MANAGE_PROJECT: _ADMINS,
}

# What a project admin may do inside that project beyond their account role (a developer's:
# their own keys and the playground), provided that role builds at all (a viewer's does not).
PROJECT_ADMIN_GRANTS = {MANAGE_ALL_KEYS, MANAGE_PROJECT}

ROLE_SUMMARIES = {
    Role.OWNER: "Everything, including members and billing.",
    Role.ADMIN: "All keys, management keys, webhooks and alerts.",
    Role.DEVELOPER: "Own keys and the playground.",
    Role.VIEWER: "Read-only: usage and wallet of their projects.",
    Role.FINANCE: "Wallet, usage, statements and budgets of every project; no keys or playground.",
}


def role_can(role: str, permission: str) -> bool:
    return role in ROLES_WITH[permission]


def member_can(
    role: str, permission: str, *, in_project: bool = False, project_role: str | None = None
) -> bool:
    """The one rule: ``role`` (the account role) may do ``permission``, account-wide or, with
    ``in_project``, inside one project where the member has ``project_role`` (None: not a
    member of it). Owners, admins and finance reach every project through their account role;
    developers and viewers only the projects they belong to, where a project admin also
    manages the project's keys and members."""
    if not in_project or role_can(role, ALL_PROJECTS):
        return role_can(role, permission)
    if project_role is None:
        return False
    if role_can(role, permission):
        return True
    return (
        project_role == ProjectRole.ADMIN
        and permission in PROJECT_ADMIN_GRANTS
        and role_can(role, MANAGE_OWN_KEYS)
    )


def can_manage_key(membership, key) -> bool:
    """Admins and owners manage every key; a project admin every key of the project; other
    builders the keys they created, while they are members of the key's project."""
    if membership.can(MANAGE_ALL_KEYS, project=key.project_id):
        return True
    return (
        membership.can(MANAGE_OWN_KEYS, project=key.project_id)
        and key.created_by_id == membership.user_id
    )


def can_see_key(membership, key) -> bool:
    return membership.can(VIEW, project=key.project_id)


def can_manage_task(membership, task) -> bool:
    """A task is spent from its key, so cancelling it is using that key: whoever may manage the
    key may manage its tasks. A task whose key is gone is left to admins and owners."""
    if membership.can(MANAGE_ALL_KEYS):
        return True
    return task.api_key is not None and can_manage_key(membership, task.api_key)
