"""POST /api/v1/keys: a key in one of the account's available groups, its plaintext returned
once, every input validated with a 400 that names the field."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from keys.models import LIMIT_FIELDS, ApiKey
from keys.services import key_digest
from tests.api.conftest import assert_error, grant
from tests.factories import RoutingGroupFactory

URL = "/api/v1/keys"


def test_creates_a_key_and_shows_its_secret_once(world, api, group, management_key):
    response = api.post(
        URL,
        {
            "name": "  CI deploys ",
            "group_id": group.pk,
            "quota": "12.5",
            "rate_limit_5h": 0.000001,
            "rate_limit_1d": 3,
            "rate_limit_7d": "100",
            "rpm": 60,
            "tpm": 100_000,
            "max_concurrent": 4,
            "expires_in_days": 30,
            "ip_allowlist": ["10.0.0.1/8", "2001:db8::1"],
            "ip_denylist": ["10.6.6.6"],
            "allowed_models": ["text-small"],
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    secret = body.pop("key")
    assert secret.startswith("sk-byts-") and not secret.startswith("sk-byts-admin-")
    key = ApiKey.objects.get()
    assert body.pop("id") == key.public_id and key.public_id.startswith("key_")
    expires_at = body.pop("expires_at")
    created_at = body.pop("created_at")
    assert body == {
        "name": "CI deploys",
        "project_id": key.project.public_id,  # the default project: none was given
        "group_id": group.pk,
        "group": "default",
        "masked_key": key.masked,
        "status": "active",
        "quota": 12.5,
        "rate_limit_5h": 0.000001,
        "rate_limit_1d": 3,
        "rate_limit_7d": 100,
        "rpm": 60,
        "tpm": 100_000,
        "max_concurrent": 4,
        "ip_allowlist": ["10.0.0.0/8", "2001:db8::1/128"],
        "ip_denylist": ["10.6.6.6/32"],
        "allowed_models": ["text-small"],
        "created_by": None,
        "created_via": "api",
        "last_used_at": None,
    }
    assert key.masked.startswith(secret[:12]) and key.masked.endswith(secret[-4:])
    assert (key.quota, key.rate_limit_5h, key.rate_limit_1d) == (12_500_000, 1, 3_000_000)
    assert (key.rpm, key.tpm, key.max_concurrent) == (60, 100_000, 4)
    assert abs(key.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert expires_at.startswith(key.expires_at.strftime("%Y-%m-%dT%H:%M"))
    assert created_at.endswith("Z")
    assert key.account == world.account and key.created_via_key == management_key[0]
    assert key.project.is_default


def test_stored_key_holds_only_a_digest_of_the_secret(api, group):
    secret = api.post(URL, {"name": "k", "group_id": group.pk}).json()["key"]

    key = ApiKey.objects.get()
    assert key.digest == key_digest(secret)
    for field in ApiKey._meta.concrete_fields:
        assert secret not in str(field.value_from_object(key))
    assert secret[len("sk-byts-") + 4 : -4] not in str(key.__dict__)


def test_creation_is_audited_with_the_management_key_as_actor(world, api, group, management_key):
    mkey, _ = management_key
    key_id = api.post(URL, {"name": "k", "group_id": group.pk}).json()["id"]

    event = AuditEvent.objects.get(account=world.account, action="api_key.create")
    assert event.actor is None
    assert event.actor_label == f"management key CI ({mkey.masked})"
    default_project = world.account.projects.get(is_default=True)
    assert event.details == {
        "key": key_id,
        "group": "default",
        "project": default_project.public_id,
    }


def test_defaults_are_no_limits_and_never_expire(api, group):
    body = api.post(URL, {"name": "k", "group_id": group.pk}).json()
    for field in LIMIT_FIELDS:
        assert body[field] is None, field
    assert body["expires_at"] is None
    assert body["ip_allowlist"] == body["ip_denylist"] == []


def test_expires_at_is_accepted_as_iso_8601_with_a_zone(api, group):
    when = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    body = api.post(URL, {"name": "k", "group_id": group.pk, "expires_at": when.isoformat()})
    assert body.status_code == 201
    assert ApiKey.objects.get().expires_at == when


def test_null_expires_in_days_leaves_expires_at_in_charge(api, group):
    body = {
        "name": "k",
        "group_id": group.pk,
        "expires_in_days": None,
        "expires_at": "2099-01-01T00:00:00Z",
    }
    assert api.post(URL, body).json()["expires_at"] == "2099-01-01T00:00:00Z"


def test_exclusive_group_needs_a_grant(world, api):
    vip = RoutingGroupFactory(slug="vip", exclusive=True)

    assert_error(api.post(URL, {"name": "k", "group_id": vip.pk}), 400, "invalid_param", "group_id")
    assert not ApiKey.objects.exists()

    grant(vip, world.account)
    response = api.post(URL, {"name": "k", "group_id": vip.pk})
    assert response.status_code == 201
    assert response.json()["group"] == "vip"


def test_group_granted_to_another_account_is_refused(world, api):
    theirs = RoutingGroupFactory(slug="their-vip", exclusive=True)
    grant(theirs, world.outsider_account)
    assert_error(
        api.post(URL, {"name": "k", "group_id": theirs.pk}), 400, "invalid_param", "group_id"
    )


@pytest.mark.parametrize("group_id", [987654, -1, 0, 2**63, 10**30])
def test_nonexistent_group_is_refused(api, group, group_id):
    response = api.post(URL, {"name": "k", "group_id": group_id})
    assert_error(response, 400, "invalid_param", "group_id")


@pytest.mark.parametrize("amount", [25, "25", 0.5, "0.000001", "1000000000"])
def test_credit_amounts_as_numbers_or_numeric_strings(api, group, amount):
    response = api.post(URL, {"name": "k", "group_id": group.pk, "quota": amount})
    assert response.status_code == 201, response.content
    assert response.json()["quota"] == float(amount)


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (-1, "negative"),
        ("-0.5", "negative"),
        (0.1234567, "six decimal places"),
        ("0.0000001", "six decimal places"),
        (1e12, "too large"),
        ("1e400", "too large"),
        ("NaN", "finite"),
        ("-Infinity", "finite"),
        ("twelve", "like 12.5"),
        ("", "like 12.5"),
        (True, "amount"),
        ([5], "like 12.5"),
    ],
)
@pytest.mark.parametrize("field", ["quota", "rate_limit_5h", "rate_limit_1d", "rate_limit_7d"])
def test_invalid_credit_amounts_are_refused(api, group, field, amount, message):
    response = api.post(URL, {"name": "k", "group_id": group.pk, field: amount})
    error = assert_error(response, 400, "invalid_param", field)
    assert message in error["message"]
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("number", ["1e999", "NaN", "Infinity"])
def test_non_finite_json_numbers_are_refused(api, group, number):
    # Python's JSON parser turns these into float infinity or NaN instead of failing.
    response = api.post(URL, f'{{"name": "k", "group_id": {group.pk}, "quota": {number}}}')
    error = assert_error(response, 400, "invalid_param", "quota")
    assert "finite" in error["message"]


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"name": 5}, "name"),
        ({"name": ["k"]}, "name"),
        ({"group_id": "1"}, "group_id"),
        ({"group_id": 1.5}, "group_id"),
        ({"group_id": True}, "group_id"),
        ({"group_id": None}, "group_id"),
        ({"expires_in_days": "30"}, "expires_in_days"),
        ({"expires_in_days": 1.5}, "expires_in_days"),
        ({"expires_at": "next week"}, "expires_at"),
        ({"ip_allowlist": "10.0.0.0/8"}, "ip_allowlist"),
        ({"ip_allowlist": [10]}, "ip_allowlist.0"),
        ({"ip_denylist": {"a": 1}}, "ip_denylist"),
    ],
)
def test_wrong_types_are_refused(api, group, changes, param):
    response = api.post(URL, {"name": "k", "group_id": group.pk, **changes})
    assert_error(response, 400, "invalid_param", param)


@pytest.mark.parametrize("field", ["name", "group_id"])
def test_name_and_group_are_required(api, group, field):
    body = {"name": "k", "group_id": group.pk}
    del body[field]
    error = assert_error(api.post(URL, body), 400, "invalid_param", field)
    assert error["message"] == "Field required"


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_blank_or_over_long_names_are_refused(api, group, name):
    assert_error(api.post(URL, {"name": name, "group_id": group.pk}), 400, "invalid_param", "name")


def test_a_name_of_100_characters_is_fine(api, group):
    assert api.post(URL, {"name": "x" * 100, "group_id": group.pk}).status_code == 201


@pytest.mark.parametrize("field", ["ip_allowlist", "ip_denylist"])
@pytest.mark.parametrize("value", ["10.0.0.0/33", "300.1.1.1", "example.com", ""])
def test_bad_cidrs_are_refused(api, group, field, value):
    response = api.post(URL, {"name": "k", "group_id": group.pk, field: ["10.0.0.0/8", value]})
    error = assert_error(response, 400, "invalid_param", field)
    assert value in error["message"] or "CIDR" in error["message"]


def test_too_many_cidrs_are_refused(api, group):
    cidrs = [f"10.0.{i}.0/24" for i in range(101)]
    response = api.post(URL, {"name": "k", "group_id": group.pk, "ip_allowlist": cidrs})
    assert_error(response, 400, "invalid_param", "ip_allowlist")


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_expires_in_days_must_be_between_1_and_3650(api, group, days):
    response = api.post(URL, {"name": "k", "group_id": group.pk, "expires_in_days": days})
    assert_error(response, 400, "invalid_param", "expires_in_days")


def test_expires_in_days_of_3650_is_fine(api, group):
    response = api.post(URL, {"name": "k", "group_id": group.pk, "expires_in_days": 3650})
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("expires_at", "message"),
    [
        ("2020-01-01T00:00:00Z", "future"),
        ("2030-01-01T00:00:00", "timezone"),
    ],
)
def test_expires_at_must_be_a_future_zoned_time(api, group, expires_at, message):
    response = api.post(URL, {"name": "k", "group_id": group.pk, "expires_at": expires_at})
    error = assert_error(response, 400, "invalid_param", "expires_at")
    assert message in error["message"]


def test_expires_at_and_expires_in_days_together_are_ambiguous(api, group):
    body = {
        "name": "k",
        "group_id": group.pk,
        "expires_at": "2099-01-01T00:00:00Z",
        "expires_in_days": 3,
    }
    assert_error(api.post(URL, body), 400, "invalid_param", "expires_in_days")


def test_unknown_fields_are_refused_so_typos_do_not_pass_silently(api, group):
    body = {"name": "k", "group_id": group.pk, "rate_limit_1h": 5}
    error = assert_error(api.post(URL, body), 400, "invalid_param", "rate_limit_1h")
    assert "rate_limit_1h" in error["message"]
