"""PATCH /api/v1/keys/{id}: change a key's name, limits, expiry and IP lists; only the fields
sent change, and the group never does."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from keys.models import ApiKey
from keys.services import api_key_delete
from tests.api.conftest import assert_error
from tests.factories import RoutingGroupFactory, issue_key


@pytest.fixture
def key(world, group):
    key, _ = issue_key(
        world.account,
        group,
        actor=world.developer,
        name="before",
        quota=1_000_000,
        rate_limit_1d=2_000_000,
        expires_at=timezone.now() + timedelta(days=5),
        ip_allowlist=["10.0.0.0/8"],
    )
    return key


def url(key) -> str:
    return f"/api/v1/keys/{key.public_id}"


def test_changes_only_the_fields_sent(api, key, group):
    response = api.patch(
        url(key),
        {
            "name": "after",
            "quota": "7.25",
            "rate_limit_5h": 1,
            "ip_denylist": ["192.168.1.7"],
        },
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "after"
    assert body["quota"] == 7.25
    assert body["rate_limit_5h"] == 1
    assert body["ip_denylist"] == ["192.168.1.7/32"]
    # Untouched.
    assert body["rate_limit_1d"] == 2
    assert body["ip_allowlist"] == ["10.0.0.0/8"]
    assert body["expires_at"] is not None
    assert body["group"] == "default"
    key.refresh_from_db()
    assert (key.name, key.quota, key.rate_limit_5h) == ("after", 7_250_000, 1_000_000)


def test_update_is_audited_with_the_management_key_as_actor(world, api, key, management_key):
    api.patch(url(key), {"name": "after", "quota": 3})

    event = AuditEvent.objects.get(account=world.account, action="api_key.update")
    assert event.actor is None
    assert event.actor_label == f"management key CI ({management_key[0].masked})"
    assert event.details["fields"] == ["name", "quota"]


def test_null_expiry_removes_it(api, key):
    body = api.patch(url(key), {"expires_at": None}).json()
    assert body["expires_at"] is None
    key.refresh_from_db()
    assert key.expires_at is None


def test_expiry_can_be_set_in_days_or_as_a_time(api, key):
    api.patch(url(key), {"expires_in_days": 10})
    key.refresh_from_db()
    assert abs(key.expires_at - (timezone.now() + timedelta(days=10))) < timedelta(minutes=1)

    api.patch(url(key), {"expires_at": "2099-05-01T12:00:00+02:00"})
    key.refresh_from_db()
    assert key.expires_at.isoformat() == "2099-05-01T10:00:00+00:00"


def test_empty_lists_or_null_clear_the_ip_lists(api, key):
    assert api.patch(url(key), {"ip_allowlist": []}).json()["ip_allowlist"] == []
    api.patch(url(key), {"ip_denylist": ["10.1.1.1"]})
    assert api.patch(url(key), {"ip_denylist": None}).json()["ip_denylist"] == []


def test_empty_patch_changes_nothing(world, api, key):
    assert api.patch(url(key), {}).json()["name"] == "before"
    assert not AuditEvent.objects.filter(account=world.account, action="api_key.update").exists()


def test_group_cannot_change(world, api, key, group):
    other = RoutingGroupFactory(slug="other")

    error = assert_error(
        api.patch(url(key), {"group_id": other.pk}), 400, "invalid_param", "group_id"
    )

    assert "group cannot change" in error["message"]
    key.refresh_from_db()
    assert key.group == group


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"quota": -1}, "quota"),
        ({"rate_limit_7d": "0.0000001"}, "rate_limit_7d"),
        ({"rate_limit_5h": 1e15}, "rate_limit_5h"),
        ({"rate_limit_1d": "lots"}, "rate_limit_1d"),
        ({"quota": 0}, "quota"),
        ({"rpm": 0}, "rpm"),
        ({"tpm": -5}, "tpm"),
        ({"max_concurrent": "4"}, "max_concurrent"),
        ({"name": "x" * 101}, "name"),
        ({"name": None}, "name"),
        ({"name": " "}, "name"),
        ({"name": 7}, "name"),
        ({"ip_allowlist": ["10.0.0.0/99"]}, "ip_allowlist"),
        ({"ip_denylist": ["not-an-ip"]}, "ip_denylist"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "soon"}, "expires_at"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 5, "expires_at": None}, "expires_in_days"),
        ({"status": "revoked"}, "status"),
        ({"status": "expired"}, "status"),
        ({"status": None}, "status"),
        ({"status": "paused", "quota": 0}, "quota"),
        ({"id": "key_other"}, "id"),
    ],
)
def test_invalid_changes_are_refused_and_change_nothing(api, key, changes, param):
    before = ApiKey.objects.filter(pk=key.pk).values().get()

    assert_error(api.patch(url(key), changes), 400, "invalid_param", param)

    assert ApiKey.objects.filter(pk=key.pk).values().get() == before


def test_malformed_json_is_refused(api, key):
    assert_error(api.patch(url(key), "{'name': 'single quotes'}"), 400, "invalid_json")


def test_another_accounts_key_is_not_found(world, api, group):
    theirs, _ = issue_key(world.outsider_account, group, name="theirs")

    assert_error(api.patch(url(theirs), {"name": "mine now"}), 404, "not_found")

    theirs.refresh_from_db()
    assert theirs.name == "theirs"


def test_deleted_key_is_not_found(world, api, key):
    api_key_delete(key=key, actor=world.owner)
    assert_error(api.patch(url(key), {"name": "back"}), 404, "not_found")
