"""Key limits in the management API: quota, the 5h/1d/7d credit caps, rpm, tpm and
max_concurrent. Absent or null is no limit; 0 is refused with a hint to pause the key instead."""

import pytest

from keys.models import ApiKey
from tests.api.conftest import assert_error
from tests.factories import issue_key

URL = "/api/v1/keys"

# (field, a JSON value, what the database stores for it)
LIMITS = [
    ("quota", 2.5, 2_500_000),
    ("rate_limit_5h", "0.25", 250_000),
    ("rate_limit_1d", 1, 1_000_000),
    ("rate_limit_7d", 7, 7_000_000),
    ("rpm", 60, 60),
    ("tpm", 250_000, 250_000),
    ("max_concurrent", 3, 3),
]
FIELDS = [field for field, _, _ in LIMITS]
COUNTS = ["rpm", "tpm", "max_concurrent"]


def returned(value):
    return float(value) if isinstance(value, str) else value


@pytest.fixture
def key(world, group):
    key, _ = issue_key(world.account, group, name="k", actor=world.owner)
    return key


def url(key) -> str:
    return f"{URL}/{key.public_id}"


def assert_pause_hint(error: dict) -> None:
    assert "0 would stop the key" in error["message"]
    assert 'set status to "paused"' in error["message"]


# --- Create ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "stored"), LIMITS)
def test_create_takes_each_limit(api, group, field, value, stored):
    response = api.post(URL, {"name": "k", "group_id": group.pk, field: value})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body[field] == returned(value)
    assert all(body[other] is None for other in FIELDS if other != field)
    assert getattr(ApiKey.objects.get(), field) == stored


@pytest.mark.parametrize("field", FIELDS)
def test_create_with_null_or_no_limit_stores_none(api, group, field):
    absent = api.post(URL, {"name": "absent", "group_id": group.pk}).json()
    null = api.post(URL, {"name": "null", "group_id": group.pk, field: None}).json()

    assert absent[field] is None and null[field] is None
    assert set(ApiKey.objects.values_list(field, flat=True)) == {None}


ZEROS = [(field, 0) for field in FIELDS] + [
    (field, zero) for field in FIELDS if field not in COUNTS for zero in ("0", 0.0, "0.000000")
]


@pytest.mark.parametrize(("field", "zero"), ZEROS)
def test_create_refuses_a_limit_of_zero_and_says_to_pause(api, group, field, zero):
    response = api.post(URL, {"name": "k", "group_id": group.pk, field: zero})

    assert_pause_hint(assert_error(response, 400, "invalid_param", field))
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("field", FIELDS)
def test_create_refuses_a_negative_limit(api, group, field):
    response = api.post(URL, {"name": "k", "group_id": group.pk, field: -1})

    assert_error(response, 400, "invalid_param", field)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("value", ["60", 60.0, 1.5, True, [60], {"n": 1}])
@pytest.mark.parametrize("field", COUNTS)
def test_counts_are_whole_json_numbers(api, group, field, value):
    response = api.post(URL, {"name": "k", "group_id": group.pk, field: value})
    assert_error(response, 400, "invalid_param", field)


@pytest.mark.parametrize(
    ("field", "largest"),
    [("rpm", 2**31 - 1), ("max_concurrent", 2**31 - 1), ("tpm", 2**63 - 1)],
)
def test_counts_up_to_what_the_database_holds(api, group, field, largest):
    ok = api.post(URL, {"name": "k", "group_id": group.pk, field: largest})
    assert ok.status_code == 201 and ok.json()[field] == largest

    too_big = api.post(URL, {"name": "k", "group_id": group.pk, field: largest + 1})
    assert "at most" in assert_error(too_big, 400, "invalid_param", field)["message"]


# --- Read ------------------------------------------------------------------------------------


def test_get_and_list_show_every_limit(world, api, group):
    key, _ = issue_key(
        world.account,
        group,
        name="limited",
        quota=5_000_000,
        rate_limit_1d=1_500_000,
        rpm=30,
        tpm=40_000,
        max_concurrent=2,
    )

    detail = api.get(url(key)).json()
    listed = api.get(URL).json()["items"][0]

    expected = {
        "quota": 5,
        "rate_limit_5h": None,
        "rate_limit_1d": 1.5,
        "rate_limit_7d": None,
        "rpm": 30,
        "tpm": 40_000,
        "max_concurrent": 2,
    }
    assert {field: detail[field] for field in FIELDS} == expected
    assert {field: listed[field] for field in FIELDS} == expected


# --- Update ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "stored"), LIMITS)
def test_patch_sets_and_clears_each_limit(api, key, field, value, stored):
    set_ = api.patch(url(key), {field: value})
    assert set_.status_code == 200, set_.content
    assert set_.json()[field] == returned(value)
    key.refresh_from_db()
    assert getattr(key, field) == stored

    cleared = api.patch(url(key), {field: None})
    assert cleared.status_code == 200 and cleared.json()[field] is None
    key.refresh_from_db()
    assert getattr(key, field) is None


@pytest.mark.parametrize(("field", "value", "stored"), LIMITS)
def test_patch_refuses_zero_with_the_pause_hint_and_keeps_the_limit(api, key, field, value, stored):
    api.patch(url(key), {field: value})

    assert_pause_hint(assert_error(api.patch(url(key), {field: 0}), 400, "invalid_param", field))

    key.refresh_from_db()
    assert getattr(key, field) == stored


@pytest.mark.parametrize("field", FIELDS)
def test_patch_refuses_a_negative_limit(api, key, field):
    assert_error(api.patch(url(key), {field: -3}), 400, "invalid_param", field)
    key.refresh_from_db()
    assert getattr(key, field) is None


def test_patching_one_limit_leaves_the_others(world, api, group):
    key, _ = issue_key(world.account, group, quota=1_000_000, rpm=10, max_concurrent=5)

    body = api.patch(url(key), {"rpm": 20}).json()

    assert (body["quota"], body["rpm"], body["tpm"], body["max_concurrent"]) == (1, 20, None, 5)
