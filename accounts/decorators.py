"""The gate every console page goes through: logged in, inside an account, allowed."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect

from accounts.permissions import VIEW
from accounts.selectors import membership_current


def account_view(permission: str = VIEW):
    """Set ``request.membership`` and ``request.account``; 403 without ``permission``.

    Users who belong to no account are sent to the page that creates one.
    """

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            membership = membership_current(request)
            if membership is None:
                return redirect("accounts:welcome")
            if not membership.can(permission):
                raise PermissionDenied("Your role in this account does not allow this.")
            request.membership = membership
            request.account = membership.account
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
