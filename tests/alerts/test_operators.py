"""Operators' alerts (alerts/operators.py): each condition is sent once when it starts and once
when it is resolved, to the webhook (signed), Slack and email set in settings, by jobs retried
with backoff; nothing is checked or sent while no target is set."""

import base64
import json
import secrets
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.core import mail
from django.utils import timezone
from standardwebhooks import Webhook

from accounts.services import audit_record
from alerts import jobs, operators
from alerts.models import OperatorCondition
from billing.metering import meter
from billing.models import Wallet
from catalogue.models import Deployment
from generation import health
from generation.models import Task
from tests.callbacks.conftest import Receiver
from tests.conftest import run_enqueued
from tests.factories import fund, funded_key

pytestmark = pytest.mark.django_db
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def ops(settings, local_callbacks, receiver, slack_receiver):
    """Operator alerts to a local webhook receiver, a local 'Slack' and two addresses."""
    settings.BYTESPIKE_OPERATOR_ALERT_WEBHOOK = receiver.url
    settings.BYTESPIKE_OPERATOR_ALERT_WEBHOOK_SECRET = SECRET
    settings.BYTESPIKE_OPERATOR_ALERT_SLACK = slack_receiver.url
    settings.BYTESPIKE_OPERATOR_ALERT_EMAILS = "oncall@bytespike.test, sre@bytespike.test"
    return receiver, slack_receiver


def sent(enqueued, capture) -> list:
    """Run the queued on-commit callbacks, then the operator jobs they queued."""
    for callback in capture:
        callback()
    capture.clear()
    return run_enqueued(enqueued)


def events(receiver) -> list[dict]:
    return [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.requests]


def test_a_breaker_trip_is_sent_once_to_every_target(
    ops, world, enqueued, django_capture_on_commit_callbacks
):
    receiver, slack = ops
    funded_key(world.account, world.owner)
    deployment = Deployment.objects.get(model__slug="gpt-4.1", channel__slug="openai")
    health.recorder.tripped(deployment.pk, "5 consecutive failures")
    health.recorder.flush()
    with django_capture_on_commit_callbacks() as capture:
        assert jobs.operator_checks()["trips"] == 1
    assert sent(enqueued, capture) == ["delivered"] * 3
    (event,) = events(receiver)
    assert event["type"] == "operator.breaker_tripped"
    assert event["data"]["channel"] == "openai" and event["data"]["model"] == "gpt-4.1"
    assert "5 consecutive failures" in event["data"]["reason"]
    assert "Circuit breaker opened: gpt-4.1 on openai" in json.loads(slack.requests[0].body)["text"]
    (email,) = mail.outbox
    assert email.to == ["oncall@bytespike.test", "sre@bytespike.test"]
    assert "Circuit breaker opened" in email.subject
    # The next checks find nothing new: one message per trip.
    with django_capture_on_commit_callbacks() as capture:
        assert jobs.operator_checks()["trips"] == 0
    assert sent(enqueued, capture) == [] and len(receiver.requests) == 1


def test_a_failing_deployment_alerts_once_and_once_more_when_resolved(
    ops, world, enqueued, django_capture_on_commit_callbacks
):
    receiver, _ = ops
    funded_key(world.account, world.owner)
    deployment = Deployment.objects.get(model__slug="gpt-4.1", channel__slug="openai")
    for n in range(operators.MIN_ATTEMPTS):
        health.recorder.record(deployment.pk, ok=n < 3, latency_ms=100)
    health.recorder.flush()
    for _ in range(3):  # beat runs the check again and again: one alert
        with django_capture_on_commit_callbacks() as capture:
            jobs.operator_checks()
        sent(enqueued, capture)
    (event,) = events(receiver)
    assert event["type"] == "operator.deployment_failing"
    assert (event["data"]["attempts"], event["data"]["failures"]) == (10, 7)

    health.DeploymentMinute.objects.all().delete()  # its minutes are over: it answers again
    with django_capture_on_commit_callbacks() as capture:
        assert jobs.operator_checks()["failing"] == 1
    sent(enqueued, capture)
    assert [e["type"] for e in events(receiver)] == [
        "operator.deployment_failing",
        "operator.deployment_failing.resolved",
    ]
    condition = OperatorCondition.objects.get(key=f"failing:{deployment.pk}")
    assert (condition.active, condition.crossings) == (False, 1)


def test_a_task_queue_over_its_threshold(
    ops, client, world, enqueued, settings, django_capture_on_commit_callbacks
):
    receiver, _ = ops
    settings.BYTESPIKE_OPERATOR_TASK_WAIT_SECONDS = 60
    _, secret = funded_key(world.account, world.owner, group="gemini-default")
    body = {"model": "imagen-4", "params": {"prompt": "A paper boat"}}
    submitted = client.post(
        "/v1/tasks/submit", json.dumps(body), content_type="application/json",
        headers={"x-api-key": secret},
    )  # fmt: skip
    assert submitted.status_code == 200, submitted.content
    enqueued.clear()  # the task's job: no worker takes it
    with django_capture_on_commit_callbacks() as capture:
        assert jobs.operator_checks()["task_queue"] == 0  # waiting, not for long
    Task.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks() as capture:
        assert jobs.operator_checks()["task_queue"] == 1
    sent(enqueued, capture)
    (event,) = events(receiver)
    assert event["type"] == "operator.task_queue" and event["data"]["waiting"] == 1
    assert event["data"]["oldest_seconds"] >= 300


def test_a_wallet_whose_books_are_wrong(ops, world, enqueued, django_capture_on_commit_callbacks):
    receiver, _ = ops
    fund(world.account, 10)
    with django_capture_on_commit_callbacks() as capture:
        assert jobs.operator_wallets_check() == 0  # sound books: nothing to say
    Wallet.objects.filter(account=world.account).update(balance=11 * 1_000_000)  # a bug's work
    with django_capture_on_commit_callbacks() as capture:
        assert jobs.operator_wallets_check() == 1
    sent(enqueued, capture)
    (event,) = events(receiver)
    assert event["type"] == "operator.wallet_problem"
    assert event["data"]["account_id"] == world.account.pk
    assert "balance 11000000 != ledger sum 10000000" in event["data"]["problems"][0]


def test_a_lagging_settlement_is_told_by_its_process_once_per_crossing(
    ops, settings, enqueued, django_capture_on_commit_callbacks
):
    receiver, _ = ops
    settings.BYTESPIKE_OPERATOR_SETTLEMENT_LAG_SECONDS = 2.0
    meter.forget()  # not lagging, whatever batches of other tests did

    class Waited:
        def __init__(self, seconds):
            import time

            self.queued = time.monotonic() - seconds

    async def batches(*lags):
        for lag in lags:
            meter._watch_lag([Waited(lag)])
            while meter._telling:  # let the telling reach the database
                import asyncio

                await asyncio.sleep(0.01)

    with django_capture_on_commit_callbacks(execute=True):
        # Over the threshold, still over, under it but above half: one alert; under half: over.
        async_to_sync(batches)(0.1, 1.9, 2.5, 3.0, 1.5, 0.5, 0.1)
    run_enqueued(enqueued)
    told = events(receiver)
    assert [e["type"] for e in told] == [
        "operator.settlement_lag",
        "operator.settlement_lag.resolved",
    ]
    assert told[0]["data"]["process"] == meter.owner
    assert told[0]["data"]["seconds"] == pytest.approx(2.5, abs=0.2)  # the batch that crossed
    assert told[1]["data"]["seconds"] == pytest.approx(0.5, abs=0.2)  # under half of it


def test_a_receiver_that_is_down_is_retried_with_backoff(settings, local_callbacks, monkeypatch):
    down = Receiver()  # not started: connections are refused
    settings.BYTESPIKE_OPERATOR_ALERT_WEBHOOK = down.url
    settings.BYTESPIKE_OPERATOR_ALERT_WEBHOOK_SECRET = SECRET
    message = {"webhook_id": "msg_1", "payload": {"type": "operator.x", "data": {}},
               "subject": "x", "text": "x"}  # fmt: skip
    job = jobs.operator_alert_send
    countdowns = []

    class Retry(Exception):
        pass

    def retry(countdown):
        countdowns.append(countdown)
        return Retry()

    monkeypatch.setattr(job, "retry", retry)
    for retries in (0, 3, 9):
        job.push_request(retries=retries)
        try:
            with pytest.raises(Retry):
                job(0, message)
        finally:
            job.pop_request()
    assert countdowns == [30, 240, 3600]  # 30 s doubling, at most an hour apart
    down.start()
    try:
        assert job(0, message) == "delivered"
    finally:
        down.stop()
    assert Webhook(SECRET).verify(down.requests[0].body, down.requests[0].headers)


def test_without_a_target_nothing_is_checked_or_sent(world, enqueued):
    deployment_count = Deployment.objects.count()
    audit_record(account=None, actor=None, action="channel.tripped", target="openai")
    assert jobs.operator_checks() == {} and jobs.operator_wallets_check() == 0
    assert not OperatorCondition.objects.exists() and enqueued == []
    assert Deployment.objects.count() == deployment_count
