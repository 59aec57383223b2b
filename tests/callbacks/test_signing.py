"""The signing secret and Standard Webhooks signatures, checked by an independent verifier."""

import base64
import hashlib
import hmac
import json
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from accounts.models import Account, AuditEvent
from accounts.webhooks import (
    webhook_secret_for_signing,
    webhook_secret_rotate,
)
from console import crypto
from generation.callbacks import payload_body, sign, webhook_headers

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
