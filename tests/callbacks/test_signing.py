"""The signing secret and Standard Webhooks signatures, checked by an independent verifier."""

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from accounts.jobs import webhook_previous_secrets_forget
from accounts.models import Account, AuditEvent
from accounts.webhooks import (
    webhook_secret_for_signing,
    webhook_secret_rotate,
    webhook_signing_keys,
)
from core import crypto
from generation.callbacks.signing import payload_body, sign, webhook_headers

pytestmark = pytest.mark.django_db


def test_rotate_returns_a_whsec_secret_of_32_random_bytes(world):
    secret = webhook_secret_rotate(account=world.account, actor=world.owner)

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert webhook_secret_rotate(account=world.account, actor=world.owner) != secret


def test_secret_is_stored_encrypted_with_a_hint_and_audited(world):
    secret = webhook_secret_rotate(account=world.account, actor=world.owner)

    account = Account.objects.get(pk=world.account.pk)
    assert secret not in account.webhook_secret_ciphertext
    assert secret.removeprefix("whsec_") not in account.webhook_secret_ciphertext
    assert crypto.decrypt(account.webhook_secret_ciphertext) == secret
    assert account.webhook_secret_hint == f"whsec_…{secret[-4:]}"
    assert account.webhook_secret_rotated_at is not None
    event = AuditEvent.objects.get(account=world.account, action="webhook_secret.rotate")
    assert event.actor == world.owner
    assert secret not in json.dumps(event.details) + event.target


def test_signing_key_is_the_decoded_current_secret(world):
    secret = webhook_secret_rotate(account=world.account, actor=world.owner)
    assert webhook_secret_for_signing(world.account) == base64.b64decode(secret[6:])

    # A rotation elsewhere (another process, a stale object here) applies to the next signing.
    newer = webhook_secret_rotate(account=Account.objects.get(pk=world.account.pk), actor=None)
    assert webhook_secret_for_signing(world.account) == base64.b64decode(newer[6:])


def test_signing_creates_a_secret_on_first_need_only_once(world):
    assert world.account.webhook_secret_ciphertext == ""

    key = webhook_secret_for_signing(world.account)

    assert len(key) == 32
    assert webhook_secret_for_signing(Account.objects.get(pk=world.account.pk)) == key
    account = Account.objects.get(pk=world.account.pk)
    assert account.webhook_secret_hint.startswith("whsec_…")
    events = AuditEvent.objects.filter(account=world.account, action="webhook_secret.create")
    assert events.count() == 1
    assert events.get().actor is None


def test_signature_verifies_with_the_standardwebhooks_library(world):
    secret = webhook_secret_rotate(account=world.account, actor=world.owner)
    key = webhook_secret_for_signing(world.account)
    body = payload_body({"type": "task.completed", "data": {"task_id": "task_1", "note": "é"}})
    headers = webhook_headers(key=key, webhook_id="msg_2xyz", timestamp=int(time.time()), body=body)

    assert Webhook(secret).verify(body, headers) == {
        "type": "task.completed",
        "data": {"task_id": "task_1", "note": "é"},
    }
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "ByteSpike-Webhooks/1"


def test_signature_matches_the_spec_by_hand():
    key = b"k" * 32
    body = b'{"a":1}'
    expected = base64.b64encode(
        hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    ).decode()

    assert sign(key=key, webhook_id="msg_1", timestamp=1700000000, body=body) == f"v1,{expected}"


def test_a_tampered_body_or_another_secret_does_not_verify(world):
    secret = webhook_secret_rotate(account=world.account, actor=world.owner)
    key = webhook_secret_for_signing(world.account)
    body = payload_body({"type": "task.failed"})
    headers = webhook_headers(key=key, webhook_id="msg_1", timestamp=int(time.time()), body=body)

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"failed", b"completed"), headers)
    other = webhook_secret_rotate(account=world.account, actor=world.owner)
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


# --- Rotation with an overlap window ---------------------------------------------------------

DAY = 24 * 3600


def key_of(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def test_a_rotation_keeps_the_previous_secret_encrypted_for_the_overlap_window(world, settings):
    settings.BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS = DAY
    old = webhook_secret_rotate(account=world.account, actor=world.owner)
    first = Account.objects.get(pk=world.account.pk)
    assert first.webhook_previous_secret_ciphertext == ""  # the first secret replaces nothing

    new = webhook_secret_rotate(account=world.account, actor=world.owner)

    account = Account.objects.get(pk=world.account.pk)
    stored = account.webhook_previous_secret_ciphertext
    assert stored == first.webhook_secret_ciphertext  # moved, as it was: Fernet-encrypted
    assert old not in stored and old.removeprefix("whsec_") not in stored
    assert crypto.decrypt(stored) == old
    assert account.webhook_previous_secret_hint == f"whsec_…{old[-4:]}"
    assert account.webhook_previous_secret_expires_at == (
        account.webhook_secret_rotated_at + timedelta(seconds=DAY)
    )
    keys = webhook_signing_keys(world.account)
    assert (keys.current, keys.previous) == (key_of(new), key_of(old))
    event = AuditEvent.objects.filter(action="webhook_secret.rotate").order_by("id").last()
    assert event.details["previous_secret"] == f"whsec_…{old[-4:]}"
    assert old not in json.dumps(event.details) and new not in json.dumps(event.details)


def test_two_signatures_in_the_window_each_verify_by_their_secret(world, settings):
    settings.BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS = DAY
    old = webhook_secret_rotate(account=world.account, actor=world.owner)
    new = webhook_secret_rotate(account=world.account, actor=world.owner)
    keys = webhook_signing_keys(world.account)
    body = payload_body({"type": "task.completed"})
    headers = webhook_headers(
        key=keys.current, previous_key=keys.previous, webhook_id="msg_1",
        timestamp=int(time.time()), body=body,
    )  # fmt: skip

    current, previous = headers["webhook-signature"].split(" ")
    assert current == sign(key=key_of(new), webhook_id="msg_1",
                           timestamp=int(headers["webhook-timestamp"]), body=body)  # fmt: skip
    assert previous == sign(key=key_of(old), webhook_id="msg_1",
                            timestamp=int(headers["webhook-timestamp"]), body=body)  # fmt: skip
    for secret in (old, new):
        Webhook(secret).verify(body, headers)


def test_rotating_again_within_the_window_keeps_only_the_secret_it_replaced(world, settings):
    settings.BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS = DAY
    oldest = webhook_secret_rotate(account=world.account, actor=world.owner)
    middle = webhook_secret_rotate(account=world.account, actor=world.owner)
    newest = webhook_secret_rotate(account=world.account, actor=world.owner)

    keys = webhook_signing_keys(world.account)
    assert (keys.current, keys.previous) == (key_of(newest), key_of(middle))
    assert key_of(oldest) not in (keys.current, keys.previous)


def test_a_grace_of_zero_keeps_no_previous_secret(world, settings):
    settings.BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS = 0
    webhook_secret_rotate(account=world.account, actor=world.owner)
    new = webhook_secret_rotate(account=world.account, actor=world.owner)

    account = Account.objects.get(pk=world.account.pk)
    assert account.webhook_previous_secret_ciphertext == ""
    assert account.webhook_previous_secret_expires_at is None
    keys = webhook_signing_keys(world.account)
    assert (keys.current, keys.previous) == (key_of(new), None)


def test_beat_erases_the_previous_secrets_past_their_window(world, settings):
    settings.BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS = DAY
    now = timezone.now()
    webhook_secret_rotate(account=world.account, actor=world.owner, now=now - timedelta(days=3))
    new = webhook_secret_rotate(account=world.account, actor=world.owner, now=now - timedelta(2))
    # Another account rotated just now: its window is open and must survive the sweep.
    webhook_secret_rotate(account=world.outsider_account, actor=world.outsider)
    webhook_secret_rotate(account=world.outsider_account, actor=world.outsider)

    assert webhook_previous_secrets_forget() == 1  # beat's task

    account = Account.objects.get(pk=world.account.pk)
    assert account.webhook_previous_secret_ciphertext == ""
    assert account.webhook_previous_secret_hint == ""
    assert account.webhook_previous_secret_expires_at is None
    assert webhook_signing_keys(world.account).current == key_of(new)
    other = Account.objects.get(pk=world.outsider_account.pk)
    assert other.webhook_previous_secret_ciphertext != ""
    assert webhook_signing_keys(other).previous is not None


def test_signing_past_the_window_erases_the_previous_secret_itself(world, settings):
    settings.BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS = DAY
    now = timezone.now()
    webhook_secret_rotate(account=world.account, actor=world.owner, now=now - timedelta(days=3))
    new = webhook_secret_rotate(account=world.account, actor=world.owner, now=now - timedelta(2))

    keys = webhook_signing_keys(world.account)

    assert (keys.current, keys.previous) == (key_of(new), None)
    assert Account.objects.get(pk=world.account.pk).webhook_previous_secret_ciphertext == ""
