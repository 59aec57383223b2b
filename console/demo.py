"""The demo account that `manage.py serve` and `manage.py seed_demo` set up (idempotent)."""

import os
import secrets

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import transaction

from accounts import services as account_services
from accounts.models import Account, Membership, Role, User
from console.datafiles import read_or_create

DEMO_ACCOUNT_NAME = "Demo Labs"


def demo_password() -> str:
    """``BYTESPIKE_DEMO_PASSWORD``, else one generated on first use and kept in the data dir."""
    return os.environ.get("BYTESPIKE_DEMO_PASSWORD") or read_or_create(
        settings.DATA_DIR / "demo_password", lambda: secrets.token_urlsafe(12)
    )


def seed_demo() -> dict:
    """Make sure the demo user and account exist; return how to log in."""
    email = settings.BYTESPIKE_DEMO_EMAIL
    password = demo_password()
    with transaction.atomic():
        user, created = User.objects.get_or_create(email=email, defaults={"name": "Demo User"})
        # Only rehash when the password changed: a new hash would log out open sessions.
        if created or not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        EmailAddress.objects.update_or_create(
            user=user, email=email, defaults={"verified": True, "primary": True}
        )
        membership = (
            Membership.objects.filter(user=user, role=Role.OWNER, account__name=DEMO_ACCOUNT_NAME)
            .select_related("account")
            .first()
        )
        account: Account = (
            membership.account
            if membership
            else account_services.account_create(owner=user, name=DEMO_ACCOUNT_NAME)
        )
    return {"email": email, "password": password, "account": account.public_id}
