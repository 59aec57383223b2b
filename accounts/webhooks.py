"""The account's webhook signing secret (Standard Webhooks ``whsec_`` format).

The secret signs task callbacks, so it must be readable by the workers: it is stored encrypted
(``core.crypto``), unlike API keys, which keep only a digest. People see it once, in the
response that creates or rotates it; afterwards only its hint is shown.

A rotation keeps the replaced secret, still encrypted, for an overlap window
(``BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS``, a day by default): callbacks sent in it carry a
signature by each secret, so a receiver can switch secrets without refusing any callback. When
the window ends the previous secret is no longer used, and it is erased: by the next signing
for the account, and for every account by beat (``webhook_previous_secrets_forget``). Only one
previous secret is kept: rotating again within the window drops the oldest.
"""

import base64
import binascii
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Account, User
from accounts.services import audit_record
from core import crypto

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32
NO_PREVIOUS = {
    "webhook_previous_secret_ciphertext": "",
    "webhook_previous_secret_hint": "",
    "webhook_previous_secret_expires_at": None,
}


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


def _stored_fields(secret: str, now: datetime | None = None) -> dict:
    return {
        "webhook_secret_ciphertext": crypto.encrypt(secret),
        "webhook_secret_hint": secret_hint(secret),
        "webhook_secret_rotated_at": now or timezone.now(),
    }


def _grace() -> timedelta:
    return timedelta(seconds=settings.BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS)


def _remember(account: Account, fields: dict) -> None:
    for name, value in fields.items():
        setattr(account, name, value)


def webhook_secret_rotate(
    *, account: Account, actor: User | None, now: datetime | None = None
) -> str:
    """Replace the account's signing secret (or create the first) and return it, once.

    Callbacks are signed with the new secret from ``now``, and also with the replaced one until
    the overlap window ends (none with a grace of 0). ``now`` is the clock, for tests.
    """
    now = now or timezone.now()
    secret = _new_secret()
    fields = _stored_fields(secret, now)
    grace = _grace()
    with transaction.atomic():
        # Locked, so two rotations at once each keep the secret the other one replaced.
        current = (
            Account.objects.select_for_update()
            .filter(pk=account.pk)
            .values("webhook_secret_ciphertext", "webhook_secret_hint")
            .get()
        )
        created = not current["webhook_secret_ciphertext"]
        details = {"first_secret": True} if created else {}
        if created or grace <= timedelta(0):
            fields.update(NO_PREVIOUS)
        else:
            fields.update(
                webhook_previous_secret_ciphertext=current["webhook_secret_ciphertext"],
                webhook_previous_secret_hint=current["webhook_secret_hint"],
                webhook_previous_secret_expires_at=now + grace,
            )
            details["previous_secret"] = current["webhook_secret_hint"]
            details["previous_signs_until"] = (now + grace).isoformat(timespec="seconds")
        Account.objects.filter(pk=account.pk).update(**fields)
        audit_record(
            account=account,
            actor=actor,
            action="webhook_secret.rotate",
            target=fields["webhook_secret_hint"],
            **details,
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


def _key_from(ciphertext: str) -> bytes:
    try:
        secret = crypto.decrypt(ciphertext)
    except ValueError as error:
        raise WebhookSecretError(str(error)) from error
    return decode_secret(secret)


@dataclass(frozen=True)
class SigningKeys:
    """The decoded HMAC keys a callback is signed with: the current secret's, and during a
    rotation's overlap window the previous secret's."""

    current: bytes
    previous: bytes | None = None


def webhook_signing_keys(account: Account, *, now: datetime | None = None) -> SigningKeys:
    """The keys for the account's callbacks, the current secret created on first need.

    Read from the database each time, so a rotation in another process applies to the next
    attempt; a task submitted before anyone opened the console still gets signed callbacks.
    A previous secret past its window is not used, and is erased here.
    """
    now = now or timezone.now()
    row = (
        Account.objects.filter(pk=account.pk)
        .values(
            "webhook_secret_ciphertext",
            "webhook_previous_secret_ciphertext",
            "webhook_previous_secret_expires_at",
        )
        .get()
    )
    current = _key_from(row["webhook_secret_ciphertext"] or _secret_create_if_missing(account))
    previous = None
    if row["webhook_previous_secret_ciphertext"]:
        if row["webhook_previous_secret_expires_at"] > now:
            try:
                previous = _key_from(row["webhook_previous_secret_ciphertext"])
            except WebhookSecretError:
                # Signing with the current secret alone is still right; only the overlap is lost.
                logger.warning("previous webhook secret of account %s is unusable", account.pk)
        else:
            webhook_previous_secrets_forget(now=now, account_id=account.pk)
    return SigningKeys(current=current, previous=previous)


def webhook_secret_for_signing(account: Account) -> bytes:
    """The decoded HMAC key of the account's current secret, created on first need."""
    return webhook_signing_keys(account).current


def webhook_previous_secrets_forget(
    *, now: datetime | None = None, account_id: int | None = None
) -> int:
    """Erase the previous secrets whose overlap window has ended; how many were erased.

    A conditional UPDATE: a rotation that just made a new previous secret is never undone.
    """
    rows = Account.objects.filter(webhook_previous_secret_expires_at__lte=now or timezone.now())
    if account_id is not None:
        rows = rows.filter(pk=account_id)
    return rows.update(**NO_PREVIOUS)


def webhook_rotation_overlap_until(
    account: Account, *, now: datetime | None = None
) -> datetime | None:
    """When the current rotation's overlap window ends, or None if none is open."""
    until = account.webhook_previous_secret_expires_at
    if account.webhook_previous_secret_ciphertext and until and until > (now or timezone.now()):
        return until
    return None
