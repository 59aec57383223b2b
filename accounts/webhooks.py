"""The account's webhook signing secret (Standard Webhooks ``whsec_`` format).

The secret signs task callbacks, so it must be readable by the workers: it is stored encrypted
(``console.crypto``), unlike API keys, which keep only a digest. People see it once, in the
response that creates or rotates it; afterwards only its hint is shown.
"""

import base64
import binascii
import secrets

from django.db import transaction
from django.utils import timezone

from accounts.models import Account, User
from accounts.services import audit_record
from console import crypto

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32


class WebhookSecretError(ValueError):
    """The stored secret cannot be used (undecryptable or not in the whsec_ format)."""


def _new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_hint(secret: str) -> str:
    return f"{SECRET_PREFIX}…{secret[-4:]}"


def decode_secret(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for, as Standard Webhooks libraries decode it."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as error:
        raise WebhookSecretError("The webhook secret is not in the whsec_ format.") from error


def _stored_fields(secret: str) -> dict:
    return {
        "webhook_secret_ciphertext": crypto.encrypt(secret),
        "webhook_secret_hint": secret_hint(secret),
        "webhook_secret_rotated_at": timezone.now(),
    }


def _remember(account: Account, fields: dict) -> None:
    for name, value in fields.items():
        setattr(account, name, value)


def webhook_secret_rotate(*, account: Account, actor: User | None) -> str:
    """Replace the account's signing secret (or create the first) and return it, once.

    Callbacks signed from now on use the new secret; the old one stops verifying at once.
    """
    secret = _new_secret()
    fields = _stored_fields(secret)
    created = not account.webhook_secret_ciphertext
    with transaction.atomic():
        Account.objects.filter(pk=account.pk).update(**fields)
        audit_record(
            account=account,
            actor=actor,
            action="webhook_secret.rotate",
            target=fields["webhook_secret_hint"],
            **({"first_secret": True} if created else {}),
        )
    _remember(account, fields)
    return secret


def _secret_create_if_missing(account: Account) -> str:
    """The stored ciphertext, creating a secret if the account has none yet.

    Two workers may need it at once: the conditional UPDATE lets one of them create it and
    the other read what the first wrote, so the account never ends up with two secrets.
    """
    secret = _new_secret()
    fields = _stored_fields(secret)
    with transaction.atomic():
        created = Account.objects.filter(pk=account.pk, webhook_secret_ciphertext="").update(
            **fields
        )
        if created:
            audit_record(
                account=account,
                actor=None,
                action="webhook_secret.create",
                target=fields["webhook_secret_hint"],
                reason="first callback",
            )
    ciphertext = (
        Account.objects.filter(pk=account.pk)
        .values_list("webhook_secret_ciphertext", flat=True)
        .get()
    )
    account.webhook_secret_ciphertext = ciphertext
    return ciphertext


def webhook_secret_for_signing(account: Account) -> bytes:
    """The decoded HMAC key for the account's callbacks, created on first need.

    Read from the database each time, so a rotation in another process applies to the next
    attempt; a task submitted before anyone opened the console still gets signed callbacks.
    """
    ciphertext = (
        Account.objects.filter(pk=account.pk)
        .values_list("webhook_secret_ciphertext", flat=True)
        .get()
    )
    if not ciphertext:
        ciphertext = _secret_create_if_missing(account)
    try:
        secret = crypto.decrypt(ciphertext)
    except ValueError as error:
        raise WebhookSecretError(str(error)) from error
    return decode_secret(secret)
