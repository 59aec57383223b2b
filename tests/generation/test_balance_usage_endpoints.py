"""GET /v1/balance and GET /v1/usage: the wallet, the calling key's quota and rolling windows,
its spend this month and its usage; in credits, for the calling key only, with errors in the
caller's protocol envelope."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import holds
from billing.limits import KEY_SPEND_BUCKET
from billing.usage import UsageFacts
from catalogue.models import AIModel
from keys.services import api_key_revoke, management_key_issue
from tests.factories import AIModelFactory, RoutingGroupFactory, fund, issue_key

pytestmark = pytest.mark.django_db
M = 1_000_000


@pytest.fixture
def group(db):
    group = RoutingGroupFactory(slug="default")
    AIModelFactory(slug="text-small", groups=[group])
    AIModelFactory(slug="img-1", display_name="Image One", family="image", groups=[group])
    return group


def bill(key, slug: str, *, charge: int, at: datetime, **usage) -> str:
    """One billed call through hold_place + hold_settle, as the data plane makes it."""
    reference = f"req_{uuid.uuid4().hex}"
    holds.hold_place(
        account_id=key.account_id, reference=reference, amount=charge, api_key_id=key.pk
    )
    found = AIModel.objects.get(slug=slug)
    facts = UsageFacts(
        model_id=found.pk, family=found.family, protocol="openai", api_key_id=key.pk, **usage
    )
    holds.hold_settle(reference=reference, charge=charge, usage=facts, at=at)
    return reference


def get(client, path, secret, data=None, **headers):
    return client.get(path, data, headers={"authorization": f"Bearer {secret}", **headers})


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def bucket_of(moment: datetime) -> datetime:
    return moment - timedelta(
        minutes=moment.minute % 5, seconds=moment.second, microseconds=moment.microsecond
    )


# --- /v1/balance -----------------------------------------------------------------------------


def test_balance_shows_the_wallet_with_holds_and_the_keys_limits(client, world, group):
    key, secret = issue_key(
        world.account, group, quota=5 * M, rate_limit_5h=4 * M, rate_limit_7d=10 * M
    )
    fund(world.account, 10)
    now = timezone.now()
    recent, older = now - timedelta(hours=1), now - timedelta(days=2)
    bill(key, "text-small", charge=1_250_000, at=recent)
    bill(key, "text-small", charge=500_000, at=older)
    # A call in flight: its hold counts against the wallet and the key's limits.
    holds.hold_place(
        account_id=world.account.pk, reference="req_open", amount=2 * M, api_key_id=key.pk
    )

    response = get(client, "/v1/balance", secret)

    assert response.status_code == 200
    assert response["X-Request-ID"].startswith("req_")
    body = response.json()
    assert body["object"] == "balance"
    assert (body["balance"], body["held"], body["available"]) == (8.25, 2, 6.25)
    assert body["key"] == {
        "id": key.public_id,
        "name": "test",
        "quota": 5,
        "quota_used": 3.75,
        "quota_remaining": 1.25,
        "rate_limits": {
            "5h": {
                "limit": 4,
                "used": 3.25,
                "remaining": 0.75,
                "reset": iso(bucket_of(recent) + timedelta(hours=5) + KEY_SPEND_BUCKET),
            },
            "1d": None,
            "7d": {
                "limit": 10,
                "used": 3.75,
                "remaining": 6.25,
                "reset": iso(bucket_of(older) + timedelta(days=7) + KEY_SPEND_BUCKET),
            },
        },
    }


def test_balance_of_an_unlimited_key_has_no_quota_or_windows(client, world, group):
    key, secret = issue_key(world.account, group)
    fund(world.account, 10)
    bill(key, "text-small", charge=1_250_000, at=timezone.now())

    body = get(client, "/v1/balance", secret).json()

    assert (body["balance"], body["held"], body["available"]) == (8.75, 0, 8.75)
    assert body["key"]["quota"] is None and body["key"]["quota_remaining"] is None
    assert body["key"]["quota_used"] == 1.25
    assert body["key"]["rate_limits"] == {"5h": None, "1d": None, "7d": None}


def test_a_cap_with_nothing_spent_yet_has_no_reset(client, world, group):
    _, secret = issue_key(world.account, group, rate_limit_1d=3 * M)

    window = get(client, "/v1/balance", secret).json()["key"]["rate_limits"]["1d"]

    assert window == {"limit": 3, "used": 0, "remaining": 3, "reset": None}


def test_reached_limits_show_zero_remaining_instead_of_refusing(client, world, group):
    key, secret = issue_key(world.account, group, quota=M, rate_limit_5h=M)
    fund(world.account, 10)
    bill(key, "text-small", charge=1_250_000, at=timezone.now())

    response = get(client, "/v1/balance", secret)

    assert response.status_code == 200
    limits = response.json()["key"]
    assert (limits["quota_used"], limits["quota_remaining"]) == (1.25, 0)
    assert limits["rate_limits"]["5h"]["remaining"] == 0


def test_month_spend_is_the_calling_keys_by_model(client, world, group):
    key, secret = issue_key(world.account, group)
    other, _ = issue_key(world.account, group, name="other")
    fund(world.account, 20)
    now = timezone.now()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    bill(key, "text-small", charge=1_250_000, at=now)
    bill(key, "text-small", charge=250_000, at=now)
    bill(key, "img-1", charge=2 * M, at=now, images=1)
    bill(key, "img-1", charge=4 * M, at=month_start - timedelta(hours=1))  # last month
    bill(other, "text-small", charge=3 * M, at=now)

    month = get(client, "/v1/balance", secret).json()["month"]

    assert month == {
        "since": iso(month_start),
        "by_model": [
            {"model": "img-1", "credits": 2, "calls": 1},
            {"model": "text-small", "credits": 1.5, "calls": 2},
        ],
        "total": 3.5,
    }


def test_balance_of_a_new_key_in_an_empty_wallet(client, world, group):
    _, secret = issue_key(world.account, group)
    body = get(client, "/v1/balance", secret).json()
    assert (body["balance"], body["held"], body["available"]) == (0, 0, 0)
    assert body["month"]["by_model"] == [] and body["month"]["total"] == 0


def test_balance_is_one_read_with_a_warm_key_cache(client, world, group):
    key, secret = issue_key(world.account, group, quota=5 * M, rate_limit_5h=M, rate_limit_1d=M)
    fund(world.account, 10)
    bill(key, "text-small", charge=M // 2, at=timezone.now())
    bill(key, "img-1", charge=M // 4, at=timezone.now(), images=1)
    get(client, "/v1/balance", secret)  # warms the key cache

    with CaptureQueriesContext(connection) as captured:
        response = get(client, "/v1/balance", secret)

    assert len(captured) == 1, [q["sql"] for q in captured]
    body = response.json()
    assert response["X-Org-Quota-Remaining-Credits"] == "9.25"  # its headers come from that read
    assert body["key"]["quota_used"] == 0.75
    assert [row["model"] for row in body["month"]["by_model"]] == ["text-small", "img-1"]


# --- /v1/usage -------------------------------------------------------------------------------


def test_usage_defaults_to_the_last_30_days_by_model_and_day(client, world, group):
    key, secret = issue_key(world.account, group, quota=10 * M)
    fund(world.account, 20)
    now = timezone.now()
    bill(key, "text-small", charge=1_250_000, at=now, input_tokens=100, output_tokens=20)
    bill(key, "img-1", charge=2 * M, at=now - timedelta(days=3), images=2)
    bill(key, "text-small", charge=500_000, at=now - timedelta(days=40))  # outside the range

    response = get(client, "/v1/usage", secret)

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "usage"
    first_day = (now - timedelta(days=29)).date()
    assert body["since"] == f"{first_day.isoformat()}T00:00:00Z"
    assert datetime.fromisoformat(body["until"]) > now
    assert body["totals"] == {
        "calls": 2,
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "images": 2,
        "seconds": 0,
        "credits": 3.25,
    }
    by_model = [(m["model"], m["display_name"], m["calls"], m["credits"]) for m in body["by_model"]]
    assert by_model == [("img-1", "Image One", 1, 2), ("text-small", "text-small", 1, 1.25)]
    assert [(d["day"], d["credits"]) for d in body["by_day"]] == [
        ((now - timedelta(days=3)).date().isoformat(), 2),
        (now.date().isoformat(), 1.25),
    ]
    # Lifetime quota use counts the old call too.
    assert (body["key"]["quota_used"], body["key"]["quota_remaining"]) == (3.75, 6.25)


def test_usage_for_a_range(client, world, group):
    key, secret = issue_key(world.account, group)
    fund(world.account, 20)
    day = datetime(2026, 3, 2, tzinfo=UTC)
    bill(key, "text-small", charge=M, at=day + timedelta(hours=23))
    bill(key, "text-small", charge=2 * M, at=day + timedelta(days=1, hours=1))
    bill(key, "text-small", charge=4 * M, at=day + timedelta(days=2, hours=1))

    body = get(client, "/v1/usage", secret, {"since": "2026-03-02", "until": "2026-03-03"}).json()

    assert (body["since"], body["until"]) == ("2026-03-02T00:00:00Z", "2026-03-04T00:00:00Z")
    assert [(d["day"], d["credits"]) for d in body["by_day"]] == [
        ("2026-03-02", 1),
        ("2026-03-03", 2),
    ]
    assert body["totals"]["credits"] == 3


def test_usage_is_only_the_calling_keys_whatever_api_key_id_says(client, world, group):
    key, secret = issue_key(world.account, group)
    teammate, _ = issue_key(world.account, group, name="teammate")
    stranger, _ = issue_key(world.outsider_account, group, name="stranger")
    fund(world.account, 20)
    fund(world.outsider_account, 20)
    now = timezone.now()
    bill(key, "text-small", charge=M, at=now)
    bill(teammate, "text-small", charge=5 * M, at=now)
    bill(stranger, "text-small", charge=7 * M, at=now)

    for other in (teammate, stranger):
        response = get(client, "/v1/usage", secret, {"api_key_id": other.public_id})
        assert response.status_code == 200
        body = response.json()
        assert body["totals"]["credits"] == 1
        assert body["key"]["id"] == key.public_id


def test_usage_and_balance_report_the_same_key_limits(client, world, group):
    key, secret = issue_key(world.account, group, quota=5 * M, rate_limit_1d=2 * M)
    fund(world.account, 10)
    bill(key, "text-small", charge=M, at=timezone.now() - timedelta(minutes=30))

    balance = get(client, "/v1/balance", secret).json()["key"]
    usage = get(client, "/v1/usage", secret).json()["key"]

    assert balance == usage
    assert usage["rate_limits"]["1d"]["used"] == 1


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"since": "last tuesday"}, "since"),
        ({"until": "2026-02-30"}, "until"),
        ({"since": "2026-03-05", "until": "2026-03-01"}, "until"),
        ({"since": "2020-01-01"}, "since"),
        # Found by fuzzing: the day after 9999-12-31 (and 30 days before 0001-01-03) overflowed
        # Python's dates, a 500.
        ({"until": "9999-12-31"}, "until"),
        ({"until": "0001-01-03"}, "until"),
    ],
)
def test_bad_range_is_400_invalid_param_in_the_openai_envelope(client, world, group, query, param):
    _, secret = issue_key(world.account, group)

    response = get(client, "/v1/usage", secret, query)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_param",
        param,
    )
    assert error["message"]


def test_bad_range_in_the_anthropic_envelope_when_anthropic_version_is_sent(client, world, group):
    _, secret = issue_key(world.account, group)

    response = get(
        client, "/v1/usage", secret, {"since": "soon"}, **{"anthropic-version": "2023-06-01"}
    )

    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


# --- Auth and methods ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/balance", "/v1/usage"])
def test_a_management_key_is_refused(client, world, group, path):
    _, secret = management_key_issue(account=world.account, actor=world.owner, name="CI")

    response = client.get(path, headers={"x-api-key": secret})

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and "Management keys" in error["message"]


@pytest.mark.parametrize("path", ["/v1/balance", "/v1/usage"])
def test_no_key_is_refused(client, db, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("path", ["/v1/balance", "/v1/usage"])
def test_a_revoked_key_is_refused(client, world, group, path):
    key, secret = issue_key(world.account, group)
    api_key_revoke(key=key, actor=world.owner)

    assert get(client, path, secret).status_code == 401


@pytest.mark.parametrize("path", ["/v1/balance", "/v1/usage"])
def test_get_only(client, world, group, path):
    _, secret = issue_key(world.account, group)
    assert client.post(path, headers={"x-api-key": secret}).status_code == 405
