"""Template context shared by every console page."""

from django.utils.functional import SimpleLazyObject

from accounts.permissions import MANAGE_ALERTS, ROLES_WITH
from accounts.selectors import membership_current, memberships_for_user
from billing.models import Wallet

NAV = [
    ("console:dashboard", "Dashboard", "home"),
    ("keys:keys", "API keys", "key"),
    ("keys:projects", "Projects", "folder"),
    ("keys:groups", "Models & pricing", "layers"),
    ("billing:usage", "Usage", "chart"),
    ("billing:wallet", "Wallet", "wallet"),
    ("generation:playground", "Playground", "spark"),
    ("generation:tasks", "Tasks", "list"),
    ("alerts:alerts", "Alerts", "alert"),
    ("accounts:team", "Team", "users"),
    ("accounts:settings", "Settings", "gear"),
]
# Operators of the gateway see these too (their pages are a 404 for everyone else).
STAFF_NAV = [
    ("console:operations", "Operations", "bolt"),
    ("generation:channels", "Channels", "pulse"),
]

# Entries shown only to roles that may open them.
NAV_PERMISSIONS = {"alerts:alerts": MANAGE_ALERTS}

# Pages under a section keep its nav entry highlighted (URL-name prefixes).
NAV_ALSO = {
    "keys:keys": ("keys:key-", "keys:management-key"),
    "keys:projects": ("keys:project-",),
    "accounts:settings": ("accounts:audit", "generation:webhook", "generation:delivery"),
    "billing:wallet": (
        "billing:redeem",
        "billing:threshold",
        "billing:top-up",
        "billing:payment",
        "billing:sandbox-checkout",
    ),
    "generation:playground": ("generation:playground-",),
    "generation:tasks": ("generation:task-",),
    "generation:channels": ("generation:channel-",),
    "alerts:alerts": ("alerts:",),
}


def _is_active(name: str, current: str) -> bool:
    return current == name or any(current.startswith(p) for p in NAV_ALSO.get(name, ()))


def _permissions(membership) -> dict[str, bool]:
    """What the current role may do, for templates: ``{% if can.view_audit %}``."""
    if not membership:
        return {}
    return {permission: membership.can(permission) for permission in ROLES_WITH}


def _may(membership, permission: str) -> bool:
    return bool(membership) and membership.can(permission)


def _low_balance(membership):
    """The wallet, when its available balance is below the alert threshold; else None.

    One small query, made only when a page draws the banner (the console layout does).
    """
    if not membership:
        return None
    wallet = (
        Wallet.objects.filter(account_id=membership.account_id)
        .only("balance", "held", "low_balance_threshold")
        .first()
    )
    return wallet if wallet is not None and wallet.is_low else None


def console(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    match = getattr(request, "resolver_match", None)
    current = f"{match.namespace}:{match.url_name}" if match else ""
    membership = getattr(request, "membership", None) or SimpleLazyObject(
        lambda: membership_current(request)
    )
    return {
        "nav": [
            {
                "url_name": name,
                "label": label,
                "icon": icon,
                "active": _is_active(name, current),
            }
            for name, label, icon in (NAV + STAFF_NAV if user.is_staff else NAV)
            if name not in NAV_PERMISSIONS or _may(membership, NAV_PERMISSIONS[name])
        ],
        # Pages behind account_view set request.membership; allauth's pages look it up.
        "membership": membership,
        "can": SimpleLazyObject(lambda: _permissions(membership)),
        "user_memberships": SimpleLazyObject(lambda: memberships_for_user(user)),
        "low_balance": SimpleLazyObject(lambda: _low_balance(membership)),
    }
