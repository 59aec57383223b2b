"""The gate every console page goes through: logged in, inside an account, allowed."""

from functools import wraps

from asgiref.sync import sync_to_async
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from accounts.models import Membership
from accounts.permissions import VIEW
from accounts.selectors import membership_current
from core import logs


def console_gate(request, permission: str) -> Membership | HttpResponse:
    """The caller's membership if they may do ``permission``; else where to send them (the
    login page, or the page that creates an account for users who belong to none). Raises
    PermissionDenied (a 403) for a role that does not allow it."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    membership = membership_current(request)
    if membership is None:
        return redirect("accounts:welcome")
    if not membership.can(permission):
        raise PermissionDenied("Your role in this account does not allow this.")
    return membership


def _admit(request, outcome) -> HttpResponse | None:
    if isinstance(outcome, HttpResponse):
        return outcome
    request.membership = outcome
    request.account = outcome.account
    # Every later line of the request, and its access line, says whose request it is.
    logs.bind(account_id=outcome.account.public_id, user_id=outcome.user_id)
    # Times on the account's pages read in its time zone (the reports' days too).
    timezone.activate(outcome.account.zone)
    return None


def staff_view(view):
    """A page for the gateway's operators (``is_staff``), not for any account's members: anyone
    else logged in gets a 404, as if it did not exist."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapper


def account_view(permission: str = VIEW):
    """Set ``request.membership`` and ``request.account``; 403 without ``permission``."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            try:
                refused = _admit(request, console_gate(request, permission))
                return refused or view(request, *args, **kwargs)
            finally:
                timezone.deactivate()

        return wrapper

    return decorator


def account_view_async(permission: str = VIEW):
    """``account_view`` for async views (the playground's text and image calls): the same gate,
    in one trip to a thread."""

    def decorator(view):
        @wraps(view)
        async def wrapper(request, *args, **kwargs):
            outcome = await sync_to_async(console_gate)(request, permission)
            try:
                refused = _admit(request, outcome)
                return refused or await view(request, *args, **kwargs)
            finally:
                timezone.deactivate()

        return wrapper

    return decorator
