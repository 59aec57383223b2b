"""The demo account that `manage.py serve` and `manage.py seed_demo` set up (idempotent)."""

import os
import secrets

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import transaction

from accounts import keys
from accounts import services as account_services
from accounts.models import Account, KeyStatus, ManagementKey, Membership, Role, User
from accounts.selectors import api_keys_for_account, groups_available
from console.datafiles import read_or_create
from generation.demo_catalogue import seed_catalogue

DEMO_ACCOUNT_NAME = "Demo Labs"
DEMO_MANAGEMENT_KEY = "Demo management key"


def demo_password() -> str:
    """``BYTESPIKE_DEMO_PASSWORD``, else one generated on first use and kept in the data dir."""
    return os.environ.get("BYTESPIKE_DEMO_PASSWORD") or read_or_create(
        settings.DATA_DIR / "demo_password", lambda: secrets.token_urlsafe(12)
    )


def seed_demo(*, issue_keys: bool = True) -> dict:
    """Make sure the demo user, account and catalogue exist; return how to log in.

    With ``issue_keys``, also return fresh secrets for the demo management key and one demo
    inference key per available group (the demo keys are rolled, not multiplied).
    """
    seed_catalogue()
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
    result = {"email": email, "password": password, "account": account.public_id}
    if issue_keys:
        result["management_key"] = _fresh_management_key(account, user)
        result["keys"] = {
            group.slug: _fresh_inference_key(account, user, group)
            for group in groups_available(account)
        }
    return result


def _fresh_management_key(account: Account, user: User) -> str:
    existing = ManagementKey.objects.filter(
        account=account, name=DEMO_MANAGEMENT_KEY, status=KeyStatus.ACTIVE
    ).first()
    if existing:
        keys.management_key_revoke(key=existing, actor=user)
    _, secret = keys.management_key_issue(account=account, actor=user, name=DEMO_MANAGEMENT_KEY)
    return secret


def _fresh_inference_key(account: Account, user: User, group) -> str:
    name = f"Demo key ({group.slug})"
    key = (
        api_keys_for_account(account)
        .filter(name=name, group=group, status=KeyStatus.ACTIVE)
        .first()
    )
    if key is None:
        return keys.api_key_issue(account=account, group=group, name=name, actor=user)[1]
    return keys.api_key_roll(key=key, actor=user)
