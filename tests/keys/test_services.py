"""Routing groups available to an account, and key issuance rules."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent, GroupGrant
from catalogue.models import Channel
from keys import services as keys
from keys.selectors import groups_available
from tests.factories import RoutingGroupFactory, issue_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def groups(world):
    public = RoutingGroupFactory(slug="default")
    exclusive = RoutingGroupFactory(slug="enterprise", exclusive=True)
    return public, exclusive


def test_available_groups_are_public_plus_granted(world, groups):
    public, exclusive = groups
    assert list(groups_available(world.account)) == [public]
    GroupGrant.objects.create(account=world.account, group=exclusive)
    assert list(groups_available(world.account)) == [public, exclusive]
    assert list(groups_available(world.outsider_account)) == [public]


def test_a_key_in_an_exclusive_group_needs_a_grant(world, groups):
    _, exclusive = groups
    with pytest.raises(keys.KeyRuleError) as error:
        issue_key(world.account, exclusive)
    assert error.value.field == "group_id"
    GroupGrant.objects.create(account=world.account, group=exclusive)
    key, _ = issue_key(world.account, exclusive)
    assert key.group == exclusive


def test_issued_key_format_and_storage(world, groups):
    key, secret = issue_key(world.account, groups[0], actor=world.owner, name="prod")
    assert keys.INFERENCE_KEY_RE.fullmatch(secret) and len(secret) >= len("sk-byts-") + 32
    assert key.digest == keys.key_digest(secret) and secret not in key.digest
    assert key.prefix == secret[:12] and key.last4 == secret[-4:]
    assert key.masked == f"{secret[:12]}…{secret[-4:]}"
    assert AuditEvent.objects.filter(action="api_key.create", actor=world.owner).exists()


def test_management_key_format(world):
    _, secret = keys.management_key_issue(account=world.account, actor=world.owner, name="ci")
    assert secret.startswith("sk-byts-admin-") and keys.MANAGEMENT_KEY_RE.fullmatch(secret)
    assert not keys.INFERENCE_KEY_RE.fullmatch(secret)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"quota": -1}, "quota"),
        ({"rate_limit_1d": -5}, "rate_limit_1d"),
        ({"ip_allowlist": ["10.0.0.300/8"]}, "ip_allowlist"),
        ({"ip_denylist": ["not-an-ip"]}, "ip_denylist"),
        ({"expires_at": timezone.now() - timedelta(days=1)}, "expires_at"),
    ],
)
def test_invalid_key_settings_are_refused(world, groups, options, field):
    with pytest.raises(keys.KeyRuleError) as error:
        keys.api_key_issue(account=world.account, group=groups[0], **{"name": "ok", **options})
    assert error.value.field == field


def test_cidrs_are_normalised(world, groups):
    key, _ = issue_key(world.account, groups[0], ip_allowlist=["10.1.2.3/8", "10.0.0.0/8", "::1"])
    assert key.ip_allowlist == ["10.0.0.0/8", "::1/128"]


def test_a_keys_group_cannot_change(world, groups):
    key, _ = issue_key(world.account, groups[0])
    with pytest.raises(keys.KeyRuleError, match="group cannot change"):
        keys.api_key_update(key=key, actor=world.owner, group_id=groups[1].pk)


def test_revoked_key_cannot_be_rolled_and_revoke_is_idempotent(world, groups):
    key, _ = issue_key(world.account, groups[0])
    keys.api_key_revoke(key=key, actor=world.owner)
    keys.api_key_revoke(key=key, actor=world.owner)
    assert AuditEvent.objects.filter(action="api_key.revoke").count() == 1
    with pytest.raises(keys.KeyRuleError):
        keys.api_key_roll(key=key, actor=world.owner)


def test_channel_secret_is_encrypted_at_rest(db):
    channel = Channel.objects.create(slug="openai", name="OpenAI", kind="openai")
    channel.set_secret("sk-live-upstream-SECRET-1234")
    channel.save()
    channel.refresh_from_db()
    assert "SECRET" not in channel.secret_ciphertext
    assert channel.secret_hint == "…1234"
    assert channel.get_secret() == "sk-live-upstream-SECRET-1234"
