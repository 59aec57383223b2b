"""/api/v1/alert-channels, /api/v1/alert-rules and /api/v1/alerts: the console's alerts for
scripts, inside the management key's account."""

import pytest

from accounts.models import AuditEvent
from alerts import services
from alerts.models import AlertRule, NotificationChannel
from tests.callbacks.conftest import dns, local_callbacks, receiver  # noqa: F401 (fixtures)
from tests.factories import RoutingGroupFactory, issue_key

pytestmark = pytest.mark.django_db

CHANNELS = "/api/v1/alert-channels"
RULES = "/api/v1/alert-rules"


@pytest.fixture
def email(api):
    response = api.post(CHANNELS, {"kind": "email", "name": "Finance", "target": "f@acme.test"})
    assert response.status_code == 201, response.content
    return response.json()


def test_creating_a_webhook_channel_returns_its_secret_once(api, receiver):  # noqa: F811
    response = api.post(CHANNELS, {"kind": "webhook", "name": "Ops", "target": receiver.url})
    assert response.status_code == 201
    body = response.json()
    assert body["secret"].startswith("whsec_") and body["secret_hint"].endswith(body["secret"][-4:])
    fetched = api.get(f"{CHANNELS}/{body['id']}").json()
    assert "secret" not in fetched and fetched["secret_hint"] == body["secret_hint"]
    event = AuditEvent.objects.get(action="alert_channel.create")
    assert event.actor is None and event.actor_label.startswith("management key CI")


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("https://127.0.0.1/x", "The URL is not a public address (loopback)."),
        ("https://169.254.169.254/x", "The URL is not a public address"),
        ("http://hooks.example.com/x", "The URL must use https."),
    ],
)
def test_an_internal_url_is_refused_naming_the_problem(api, target, problem):
    response = api.post(CHANNELS, {"kind": "webhook", "name": "x", "target": target})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "target" and problem in error["message"]
    assert not NotificationChannel.objects.exists()


def test_channels_are_listed_updated_tested_and_deleted(api, email, enqueued):
    assert api.get(CHANNELS).json()["total"] == 1
    updated = api.patch(f"{CHANNELS}/{email['id']}", {"enabled": False, "name": "Money"}).json()
    assert (updated["enabled"], updated["name"], updated["target"]) == (
        False,
        "Money",
        "f@acme.test",
    )
    bad = api.patch(f"{CHANNELS}/{email['id']}", {"target": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "target"

    tested = api.post(f"{CHANNELS}/{email['id']}/test")
    assert tested.status_code == 202 and tested.json()["status"] == "pending"
    (alert,) = api.get("/api/v1/alerts").json()["items"]
    assert alert["type"] == "alert.test" and alert["deliveries"][0]["id"] == tested.json()["id"]

    assert api.delete(f"{CHANNELS}/{email['id']}").status_code == 204
    assert api.get(f"{CHANNELS}/{email['id']}").status_code == 404


def test_rules_of_each_kind_are_created_and_changed(api, email, world):
    key, _ = issue_key(world.account, RoutingGroupFactory(), quota=10_000_000)
    channel_ids = [email["id"]]
    bodies = [
        {"kind": "balance_below", "threshold": 12.5},
        {"kind": "monthly_spend", "threshold": "1000"},
        {"kind": "key_quota", "key_id": key.public_id},
        {"kind": "callback_failures", "streak": 3},
    ]
    created = []
    for body in bodies:
        response = api.post(RULES, {**body, "channel_ids": channel_ids})
        assert response.status_code == 201, response.content
        created.append(response.json())
    assert [r["threshold"] for r in created] == [12.5, 1000, None, None]
    assert created[2]["key_id"] == key.public_id and created[3]["streak"] == 3
    assert all(r["channel_ids"] == channel_ids for r in created)

    changed = api.patch(f"{RULES}/{created[0]['id']}", {"threshold": 3, "enabled": False}).json()
    assert (changed["threshold"], changed["enabled"]) == (3, False)
    every_key = api.patch(f"{RULES}/{created[2]['id']}", {"key_id": None}).json()
    assert every_key["key_id"] is None
    assert api.get(RULES).json()["total"] == 4
    assert api.delete(f"{RULES}/{created[3]['id']}").status_code == 204
    assert AlertRule.objects.count() == 3


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"kind": "balance_below"}, "threshold"),
        ({"kind": "balance_below", "threshold": 0}, "threshold"),
        ({"kind": "monthly_spend", "threshold": -1}, "threshold"),
        ({"kind": "callback_failures"}, "streak"),
        ({"kind": "callback_failures", "streak": 0}, "streak"),
        ({"kind": "key_quota", "key_id": "key_nope"}, "key_id"),
        ({"kind": "storm"}, "kind"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(api, email, body, param):
    response = api.post(RULES, {**body, "channel_ids": [email["id"]]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not AlertRule.objects.exists()


def test_a_rule_needs_channels_of_its_own_account(api, world):
    theirs, _ = services.channel_create(
        account=world.outsider_account, actor=world.outsider, kind="email", name="T",
        target="t@other.test",
    )  # fmt: skip
    for channel_ids in ([], [theirs.public_id]):
        response = api.post(
            RULES, {"kind": "balance_below", "threshold": 1, "channel_ids": channel_ids}
        )
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "channel_ids"


def test_another_accounts_channels_and_rules_are_404(api, outsider_api, email):
    rule = api.post(RULES, {"kind": "balance_below", "threshold": 1, "channel_ids": [email["id"]]})
    rule_id = rule.json()["id"]
    assert outsider_api.get(f"{CHANNELS}/{email['id']}").status_code == 404
    assert outsider_api.patch(f"{CHANNELS}/{email['id']}", {"name": "x"}).status_code == 404
    assert outsider_api.post(f"{CHANNELS}/{email['id']}/test").status_code == 404
    assert outsider_api.delete(f"{CHANNELS}/{email['id']}").status_code == 404
    assert outsider_api.get(f"{RULES}/{rule_id}").status_code == 404
    assert outsider_api.patch(f"{RULES}/{rule_id}", {"enabled": False}).status_code == 404
    assert outsider_api.delete(f"{RULES}/{rule_id}").status_code == 404
    assert outsider_api.get(CHANNELS).json()["total"] == 0
    assert outsider_api.get("/api/v1/alerts").json()["total"] == 0


def test_without_a_key_it_is_401(client):
    assert client.get(CHANNELS).status_code == 401
    assert client.get(RULES).status_code == 401


def test_test_alerts_past_the_hourly_limit_are_429(api, email):
    from alerts.services import TEST_ALERTS_PER_HOUR

    for _ in range(TEST_ALERTS_PER_HOUR):
        assert api.post(f"{CHANNELS}/{email['id']}/test").status_code == 202
    refused = api.post(f"{CHANNELS}/{email['id']}/test")
    assert refused.status_code == 429 and refused["Retry-After"] == "3600"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
