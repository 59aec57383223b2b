"""Each rule fires exactly once per crossing, through local receivers (a signed webhook, a
Slack incoming webhook, email), re-arms only once its condition cleared, and never fires short
of its threshold."""

import json
from datetime import datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone
from standardwebhooks import Webhook

from alerts import services
from alerts.models import Alert, AlertState, RuleKind
from billing.services import refund, wallet_top_up
from generation.callbacks.services import callback_deliver, callback_schedule
from tests.alerts.conftest import M, deliver_all, delivered
from tests.callbacks.conftest import Answer, finished_task, task_data
from tests.factories import RoutingGroupFactory, fund, issue_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluate(world, django_capture_on_commit_callbacks, enqueued):
    """Evaluate the world's account now (or at ``now``), then run the deliveries it queued."""

    def run(now=None) -> list[Alert]:
        with django_capture_on_commit_callbacks(execute=True):
            fired = services.account_evaluate(account_id=world.account.pk, now=now)
        deliver_all(enqueued)
        return fired

    return run


def rule(world, kind, channels, **fields):
    return services.rule_create(
        account=world.account, actor=world.owner, kind=kind, channels=channels, **fields
    )


# --- Balance below ------------------------------------------------------------------------------


def test_balance_below_fires_once_per_crossing_to_every_channel(
    world, channels, receiver, slack_receiver, spend, evaluate
):
    (webhook, slack, email), secret = channels
    fund(world.account, 10)
    balance_rule = rule(world, RuleKind.BALANCE_BELOW, [webhook, slack, email], threshold=5 * M)

    spend(4)  # 6 left: above the threshold
    assert evaluate() == []

    spend(2)  # 4 left: crossed
    (alert,) = evaluate()
    assert alert.event_type == "alert.balance_below" and alert.rule == balance_rule
    assert delivered(alert) == {"webhook", "slack", "email"}

    # The webhook: Standard Webhooks headers, verified with the channel's own secret.
    (request,) = receiver.requests
    event = Webhook(secret).verify(request.body, request.headers)
    assert event["type"] == "alert.balance_below"
    data = event["data"]
    assert data["alert_id"] == alert.public_id
    assert data["account"] == {"id": world.account.public_id, "name": "Acme"}
    assert data["rule"] == {"id": balance_rule.public_id, "kind": "balance_below"}
    assert (data["threshold"], data["available"], data["balance"]) == (5, 4, 4)
    assert request.headers["webhook-id"] == alert.deliveries.get(channel=webhook).webhook_id

    # Slack: a text message (and blocks), no signature.
    (posted,) = slack_receiver.requests
    assert posted.path == "/services/T0/B0/xyz"
    body = json.loads(posted.body)
    assert "Available balance below 5.00 credits" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    assert "webhook-signature" not in posted.headers

    # Email: one message to the channel's addresses.
    (message,) = mail.outbox
    assert message.to == ["finance@acme.test", "owner@acme.test"]
    assert "Available balance below 5.00 credits" in message.subject
    assert "Available: 4" in message.body

    spend(1)  # still below: no second alert, however often it is evaluated
    assert evaluate() == [] and evaluate() == []
    assert Alert.objects.count() == 1 and len(receiver.requests) == 1


def test_balance_below_rearms_after_a_top_up_and_fires_again(world, channels, spend, evaluate):
    (webhook, _, _), _ = channels
    fund(world.account, 10)
    rule(world, RuleKind.BALANCE_BELOW, [webhook], threshold=5 * M)
    spend(6)
    assert len(evaluate()) == 1

    wallet_top_up(account=world.account, amount=M, reference="small")  # 5 left: at, not above
    assert AlertState.objects.get().armed is True  # at the threshold counts as cleared
    spend(0.5)
    assert len(evaluate()) == 1  # crossed again

    spend(0.5)
    assert evaluate() == []
    refund(account=world.account, amount=10 * M, reference="r1")  # a credit re-arms too
    spend(10)  # 14 - 10: below again
    (again,) = evaluate()
    assert again.dedupe_key.endswith(":3")  # the third crossing of the same subject
    assert Alert.objects.count() == 3


def test_a_hold_ending_does_not_rearm_a_balance_rule(world, channels, spend, evaluate):
    """Available balance dips under the threshold while a big call is held, and rises when the
    hold ends: that is one crossing, not one per call."""
    (webhook, _, _), _ = channels
    fund(world.account, 10)
    rule(world, RuleKind.BALANCE_BELOW, [webhook], threshold=5 * M)
    from billing import holds

    holds.hold_place(account_id=world.account.pk, reference="big", amount=6 * M)
    assert len(evaluate()) == 1
    holds.hold_release(reference="big")
    assert evaluate() == []
    holds.hold_place(account_id=world.account.pk, reference="big2", amount=6 * M)
    assert evaluate() == []


def test_a_disabled_rule_or_channel_sends_nothing(world, channels, spend, evaluate, receiver):
    (webhook, slack, _), _ = channels
    fund(world.account, 10)
    off = rule(world, RuleKind.BALANCE_BELOW, [webhook], threshold=5 * M, enabled=False)
    services.channel_update(
        channel=slack, actor=world.owner, name=slack.name, target=slack.target, enabled=False
    )
    on = rule(world, RuleKind.BALANCE_BELOW, [slack], threshold=5 * M)
    spend(6)
    (alert,) = evaluate()
    assert alert.rule == on and alert.rule != off
    assert alert.deliveries.count() == 0 and receiver.requests == []


# --- Monthly spend --------------------------------------------------------------------------------


def test_monthly_spend_fires_once_a_month(world, channels, spend, evaluate, receiver):
    (webhook, _, _), _ = channels
    fund(world.account, 100)
    rule(world, RuleKind.MONTHLY_SPEND, [webhook], threshold=10 * M)
    june = datetime(2031, 6, 10, 12, tzinfo=timezone.UTC)
    july = datetime(2031, 7, 1, 0, 30, tzinfo=timezone.UTC)

    spend(9, at=june)
    assert evaluate(now=june) == []
    spend(1, at=june + timedelta(hours=1))  # 10: reached
    (alert,) = evaluate(now=june + timedelta(hours=2))
    assert alert.data["month"] == "2031-06" and alert.data["spent"] == 10
    spend(5, at=june + timedelta(days=1))
    assert evaluate(now=june + timedelta(days=1)) == []

    assert evaluate(now=july) == []  # a new month starts from nothing
    spend(10, at=july)
    (again,) = evaluate(now=july + timedelta(minutes=5))
    assert again.data["month"] == "2031-07"
    assert [json.loads(r.body)["type"] for r in receiver.requests] == ["alert.monthly_spend"] * 2


def test_monthly_spend_counts_the_month_of_the_accounts_time_zone(world, channels, spend, evaluate):
    (webhook, _, _), _ = channels
    world.account.time_zone = "America/New_York"  # UTC-4 in summer
    world.account.save(update_fields=["time_zone"])
    fund(world.account, 100)
    rule(world, RuleKind.MONTHLY_SPEND, [webhook], threshold=10 * M)
    # 1 July 02:00 UTC is still 30 June 22:00 in New York: June's spend.
    spend(6, at=datetime(2031, 6, 15, 12, tzinfo=timezone.UTC))
    spend(4, at=datetime(2031, 7, 1, 2, tzinfo=timezone.UTC))
    (alert,) = evaluate(now=datetime(2031, 7, 1, 3, tzinfo=timezone.UTC))
    assert alert.data["month"] == "2031-06" and alert.data["spent"] == 10
    # 1 July 05:00 UTC is July in New York: a new month starts from nothing.
    assert evaluate(now=datetime(2031, 7, 1, 5, tzinfo=timezone.UTC)) == []


# --- Key quota and caps ---------------------------------------------------------------------------


@pytest.fixture
def group(db):
    return RoutingGroupFactory()


def test_a_key_fires_at_80_and_at_100_percent_of_its_quota(
    world, group, channels, spend, evaluate, receiver
):
    (webhook, _, _), _ = channels
    fund(world.account, 100)
    key, secret = issue_key(world.account, group, name="Batch jobs", quota=10 * M)
    rule(world, RuleKind.KEY_QUOTA, [webhook])  # every key

    spend(7, key=key)
    assert evaluate() == []
    spend(1, key=key)  # 80%
    (first,) = evaluate()
    assert first.data["percent"] == 80 and first.data["limit"] == "quota"
    assert first.data["key"] == {"id": key.public_id, "name": "Batch jobs"}
    spend(1, key=key)
    assert evaluate() == []
    spend(1, key=key)  # 100%
    (second,) = evaluate()
    assert second.data["percent"] == 100 and second.title == "Key Batch jobs at 100% of its quota"

    # No secret of the key anywhere in what was sent.
    assert all(secret.encode() not in r.body for r in receiver.requests)
    assert all(key.digest.encode() not in r.body for r in receiver.requests)

    key.quota = 20 * M  # raised: a new limit, armed afresh (10 of 20 is 50%)
    key.save(update_fields=["quota"])
    assert evaluate() == []
    spend(6, key=key)
    (third,) = evaluate()
    assert third.data["percent"] == 80 and third.data["cap"] == 20


def test_a_cap_crossed_at_once_fires_its_highest_level_only_and_rearms_as_the_window_moves(
    world, group, channels, spend, evaluate
):
    (webhook, _, _), _ = channels
    fund(world.account, 100)
    key, _ = issue_key(world.account, group, rate_limit_1d=5 * M)
    other, _ = issue_key(world.account, group, rate_limit_1d=5 * M)
    rule(world, RuleKind.KEY_QUOTA, [webhook], api_key=key)  # this key only
    now = timezone.now()

    spend(5, key=key, at=now)
    spend(5, key=other, at=now)
    (alert,) = evaluate(now=now)
    assert (alert.data["limit"], alert.data["percent"]) == ("1d", 100)
    assert alert.data["key"]["id"] == key.public_id
    assert evaluate(now=now + timedelta(hours=1)) == []

    later = now + timedelta(days=1, minutes=10)  # the spend left the window: cleared
    assert evaluate(now=later) == []
    spend(4, key=key, at=later)
    (again,) = evaluate(now=later)
    assert again.data["percent"] == 80


# --- Failed callbacks -----------------------------------------------------------------------------


def test_a_streak_of_failed_callbacks_fires_once_and_a_success_ends_it(
    world, channels, evaluate, receiver, enqueued, django_capture_on_commit_callbacks
):
    (_, slack, _), _ = channels
    rule(world, RuleKind.CALLBACK_FAILURES, [slack], streak=3)
    from tests.factories import AIModelFactory

    model = AIModelFactory(slug="image-model", family="image")
    deliver_all(enqueued)

    def callback(status: int) -> None:
        receiver.answer(Answer(status=status))
        task = finished_task(world.account, model, receiver.url)
        with django_capture_on_commit_callbacks(execute=True):
            delivery = callback_schedule(task, task_data(task))
        enqueued.clear()  # the callback's own job: sent here instead
        with django_capture_on_commit_callbacks(execute=True):
            callback_deliver(delivery.pk)

    def alerts_after_jobs() -> int:
        deliver_all(enqueued)  # the evaluations the attempts queued, and their deliveries
        return Alert.objects.filter(event_type="alert.callback_failures").count()

    callback(500)
    callback(500)
    assert alerts_after_jobs() == 0
    callback(503)  # three in a row
    assert alerts_after_jobs() == 1
    callback(500)
    assert alerts_after_jobs() == 1
    callback(200)  # delivered: the streak is over
    callback(500)
    callback(500)
    assert alerts_after_jobs() == 1
    callback(500)
    assert alerts_after_jobs() == 2
    assert Alert.objects.filter(event_type="alert.callback_failures").first().data["failed"] == 3


# --- Budgets ------------------------------------------------------------------------------------


def test_a_budget_alerts_at_50_80_and_100_percent_hard_or_soft(world, channels, spend, evaluate):
    from billing.budgets import budget_set

    (webhook, _, _), _ = channels
    fund(world.account, 100)
    budget_set(account=world.account, scope="account", monthly=10 * M, lifetime=None,
               hard=False, actor=world.owner)  # fmt: skip
    rule(world, RuleKind.BUDGET, [webhook])
    spend(4)
    assert evaluate() == []
    spend(1)  # 50%
    (half,) = evaluate()
    assert half.data["percent"] == 50 and half.data["budget"]["kind"] == "soft"
    assert half.title.startswith("Spend of the account at 50% of its")
    spend(5)  # 100% at once: the highest level only
    (full,) = evaluate()
    assert full.data["percent"] == 100 and full.data["spent"] == 10
    assert evaluate() == []


def test_a_projects_budget_alerts_too(world, channels, spend, evaluate):
    from tests.factories import RoutingGroupFactory, issue_key, project

    (webhook, _, _), _ = channels
    fund(world.account, 100)
    search = project(world.account, "Search", monthly_budget=10 * M)
    key, _ = issue_key(world.account, RoutingGroupFactory(), project=search)
    rule(world, RuleKind.BUDGET, [webhook])
    spend(8, key=key)  # 80%
    (alert,) = evaluate()
    assert alert.data["percent"] == 80 and alert.data["budget"]["scope"] == "project"
    assert alert.title.startswith("Spend of the project Search at 80%")
