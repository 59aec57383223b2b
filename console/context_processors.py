"""Template context shared by every console page."""

from django.utils.functional import SimpleLazyObject

from accounts.selectors import membership_current, memberships_for_user

NAV = [
    ("console:dashboard", "Dashboard", "home"),
    ("console:keys", "API keys", "key"),
    ("console:usage", "Usage", "chart"),
    ("console:wallet", "Wallet", "wallet"),
    ("console:playground", "Playground", "spark"),
    ("console:tasks", "Tasks", "list"),
    ("accounts:team", "Team", "users"),
    ("accounts:settings", "Settings", "gear"),
]


def console(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    match = getattr(request, "resolver_match", None)
    current = f"{match.namespace}:{match.url_name}" if match else ""
    return {
        "nav": [
            {
                "url_name": name,
                "label": label,
                "icon": icon,
                "active": current == name,
            }
            for name, label, icon in NAV
        ],
        # Pages behind account_view set request.membership; allauth's pages look it up.
        "membership": getattr(request, "membership", None)
        or SimpleLazyObject(lambda: membership_current(request)),
        "user_memberships": SimpleLazyObject(lambda: memberships_for_user(user)),
    }
