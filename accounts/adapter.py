"""django-allauth hooks: display names, the client address, and failed-login limits that slow
guessing without letting a stranger lock a user out.

Failed logins are counted (``ACCOUNT_RATE_LIMITS``):

- ``login_failed`` per address (``10/m/ip``) and per address and account (``5/5m/key``: allauth's
  "key" is the account's email, to which we add the address). Guesses from one address at one
  account stop after five; the account's owner, elsewhere, is not affected.
- ``login_failed_account`` per account from every address (a ceiling one address cannot reach on
  its own), which bounds guessing spread over many addresses. Browsers that have signed in to
  the account before (a signed cookie set at login) are exempt, so that ceiling locks out
  strangers, not the account's own user.

A successful login does not count (allauth rolls its attempt back). Second-factor codes keep
allauth's per-user limit.
"""

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import ratelimit
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.utils.crypto import salted_hmac

from core.http import client_ip
from core.mail import as_text_email

KNOWN_BROWSER_COOKIE = "known_browser"
KNOWN_BROWSER_SALT = "accounts.known-browser"
KNOWN_BROWSER_SECONDS = 365 * 24 * 3600
KNOWN_BROWSER_ACCOUNTS = 5  # per browser, the most recent


def _login(credentials: dict) -> str:
    return (credentials.get("email") or "").strip().lower()


def _account_tag(email: str) -> str:
    """A short keyed digest of an email: the cookie names accounts without showing them."""
    return salted_hmac(KNOWN_BROWSER_SALT, email.lower(), algorithm="sha256").hexdigest()[:24]


def _known_accounts(request) -> list[str]:
    value = request.get_signed_cookie(
        KNOWN_BROWSER_COOKIE, default="", salt=KNOWN_BROWSER_SALT, max_age=KNOWN_BROWSER_SECONDS
    )
    return [tag for tag in value.split(",") if tag]


class AccountAdapter(DefaultAccountAdapter):
    def render_mail(self, template_prefix, email, context, headers=None):
        """allauth's e-mails (sign-up confirmation, password reset) in 7bit or 8bit text, so
        the link in them stays whole where the mail is printed or read raw (core/mail.py)."""
        return as_text_email(super().render_mail(template_prefix, email, context, headers))

    def get_user_display(self, user) -> str:
        return user.display_name

    def get_client_ip(self, request) -> str:
        """The address allauth's per-IP limits count: ours, not its own reading of headers."""
        address = client_ip(request)
        if not address:
            raise PermissionDenied("Unable to determine client IP address")
        return address

    def _get_login_attempts_cache_key(self, request, **credentials) -> str:
        # allauth counts failed logins per this "key", and clears it after a password reset. Per
        # account alone, anyone could lock a user out with five wrong passwords.
        per_account = super()._get_login_attempts_cache_key(request, **credentials)
        return f"{self.get_client_ip(request)}|{per_account}"

    def pre_authenticate(self, request, **credentials) -> None:
        super().pre_authenticate(request, **credentials)  # per address; per address and account
        login = _login(credentials)
        if not login or _account_tag(login) in _known_accounts(request):
            return
        if not ratelimit.consume(request, action="login_failed_account", key=login, dry_run=True):
            raise self.validation_error("too_many_login_attempts")

    def authentication_failed(self, request, **credentials) -> None:
        if login := _login(credentials):
            ratelimit.consume(request, action="login_failed_account", key=login)

    def post_login(self, request, user, **kwargs):
        response = super().post_login(request, user, **kwargs)
        tag = _account_tag(user.email)
        known = [tag, *(t for t in _known_accounts(request) if t != tag)]
        response.set_signed_cookie(
            KNOWN_BROWSER_COOKIE,
            ",".join(known[:KNOWN_BROWSER_ACCOUNTS]),
            salt=KNOWN_BROWSER_SALT,
            max_age=KNOWN_BROWSER_SECONDS,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )
        return response
