"""Sending alerts: a receiver that is down is retried with backoff (by workers, never in the
request that crossed the threshold), URLs are checked by the callbacks' SSRF rules when saved
and again before every attempt, and a test alert goes to one channel."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import jobs, services
from alerts.delivery import Message, Target, TargetError, target_check, target_send
from alerts.models import Alert, AlertDelivery, ChannelKind, RuleKind
from core.delivery import DeliveryStatus
from generation.callbacks.services import MAX_ATTEMPTS
from tests.alerts.conftest import M
from tests.callbacks.conftest import Answer, Receiver
from tests.conftest import run_enqueued
from tests.factories import funded_key

pytestmark = pytest.mark.django_db


def make_due(delivery: AlertDelivery) -> AlertDelivery:
    AlertDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    delivery.refresh_from_db()
    return delivery


def webhook_channel(world, url):
    channel, secret = services.channel_create(
        account=world.account, actor=world.owner, kind=ChannelKind.WEBHOOK, name="Hook",
        target=url,
    )  # fmt: skip
    return channel, secret


def test_a_down_receiver_is_retried_with_backoff_until_it_answers(
    world, local_callbacks, enqueued, django_capture_on_commit_callbacks
):
    receiver = Receiver()  # not started: connections are refused
    channel, _ = webhook_channel(world, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        delivery = services.channel_test(channel=channel, actor=world.owner)
    assert [job.name for job in enqueued] == ["alerts.jobs.alert_deliver"]

    before = timezone.now()
    assert run_enqueued([enqueued.pop(0)]) == ["pending"]
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.status == DeliveryStatus.PENDING
    assert "Could not connect" in delivery.last_error
    # The first retry waits 10 s (with 20% jitter), the next ones longer and longer.
    wait = (delivery.next_attempt_at - before).total_seconds()
    assert 7.5 <= wait <= 12.5
    # Its next attempt is enqueued with a countdown (run by hand below, once due).
    assert [(job.name, job.args) for job in enqueued] == [
        ("alerts.jobs.alert_deliver", (delivery.pk,))
    ]
    enqueued.clear()

    make_due(delivery)
    jobs.alert_deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert (delivery.next_attempt_at - timezone.now()).total_seconds() >= 30 * 0.8 - 1
    enqueued.clear()

    receiver.start()
    try:
        make_due(delivery)
        assert jobs.alert_deliver(delivery.pk) == "delivered"
    finally:
        receiver.stop()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    assert delivery.last_error == "" and delivery.delivered_at is not None
    assert len(receiver.requests) == 1


def test_a_delivery_gives_up_after_the_last_attempt(world, receiver, enqueued):
    receiver.answer(*[Answer(status=500)] * MAX_ATTEMPTS)
    channel, _ = webhook_channel(world, receiver.url)
    delivery = services.channel_test(channel=channel, actor=world.owner)
    for _ in range(MAX_ATTEMPTS):
        services.alert_deliver(make_due(delivery).pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, MAX_ATTEMPTS)
    assert delivery.next_attempt_at is None
    assert delivery.last_error == "The receiver answered HTTP 500."
    assert services.alert_deliver(delivery.pk) is None  # nothing more to do


def test_an_attempt_is_sent_once_and_a_lost_one_is_resent_by_beat(world, receiver, enqueued):
    channel, _ = webhook_channel(world, receiver.url)
    delivery = services.channel_test(channel=channel, actor=world.owner)
    assert services.alert_deliver(delivery.pk).status == "delivered"
    assert services.alert_deliver(delivery.pk) is None  # a duplicate message: skipped
    assert len(receiver.requests) == 1

    lost = services.channel_test(channel=channel, actor=world.owner)
    AlertDelivery.objects.filter(pk=lost.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=5)
    )
    enqueued.clear()
    assert jobs.alert_deliveries_resend_due() == 1
    assert [job.args for job in enqueued] == [(lost.pk,)]


def test_the_call_that_crosses_a_threshold_returns_before_any_alert_is_sent(
    world, client, local_callbacks, enqueued, django_capture_on_commit_callbacks
):
    """The data plane sends nothing and enqueues nothing for alerts: beat's sweep finds the
    account that spent, a worker evaluates it and another sends, retrying a receiver that is
    down."""
    _, secret = funded_key(world.account, world.owner, credits=1)
    receiver = Receiver()  # down
    channel, _ = webhook_channel(world, receiver.url)
    services.rule_create(
        account=world.account, actor=world.owner, kind=RuleKind.BALANCE_BELOW,
        channels=[channel], threshold=M,
    )  # fmt: skip
    enqueued.clear()

    response = client.post(
        "/v1/chat/completions",
        data=json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi"}]}),
        content_type="application/json",
        headers={"authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200
    assert not [job for job in enqueued if job.name.startswith("alerts.")]
    assert not Alert.objects.exists() and not AlertDelivery.objects.exists()

    assert jobs.alerts_evaluate_recent() == 1
    with django_capture_on_commit_callbacks(execute=True):
        run_enqueued([job for job in enqueued if job.name == "alerts.jobs.alerts_evaluate_account"])
    (delivery,) = AlertDelivery.objects.all()
    assert jobs.alert_deliver(delivery.pk) == "pending"  # down: retried later
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.next_attempt_at > timezone.now()


# --- Where alerts may go --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://127.0.0.1/hook", "The URL is not a public address (loopback)."),
        ("https://10.0.0.7/hook", "The URL is not a public address (private)."),
        ("https://169.254.169.254/latest/meta-data", "The URL is not a public address"),
        ("https://[::1]/hook", "The URL is not a public address (loopback)."),
        ("https://metadata.google.internal/", "The URL must not point to an internal host."),
        ("https://localhost/hook", "The URL must not point to an internal host."),
        ("http://hooks.example.com/", "The URL must use https."),
        ("https://user:pw@hooks.example.com/", "must not contain a user name or password"),
        ("not a url", "The URL is not a valid URL."),
    ],
)
def test_internal_and_malformed_urls_are_refused_with_the_problem(
    world, strict_callbacks, url, problem
):
    with pytest.raises(TargetError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        webhook_channel(world, url)
    assert not world.account.alert_channels.exists()


def test_a_name_that_resolves_to_a_private_address_is_refused(world, strict_callbacks, dns):
    dns.names["hooks.example.com"] = ["93.184.216.34", "192.168.1.10"]
    with pytest.raises(TargetError, match=r"The URL must resolve to public addresses only\."):
        webhook_channel(world, "https://hooks.example.com/alerts")


def test_a_name_rebound_to_an_internal_address_after_saving_is_not_sent_to(
    world, strict_callbacks, dns, connections
):
    dns.names["hooks.example.com"] = ["93.184.216.34"]
    channel, _ = webhook_channel(world, "https://hooks.example.com/alerts")
    dns.names["hooks.example.com"] = ["127.0.0.1"]
    delivery = services.channel_test(channel=channel, actor=world.owner)

    services.alert_deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.last_error == "Not sent: The URL must resolve to public addresses only."
    assert delivery.status == DeliveryStatus.PENDING  # retried: the name may be fixed
    assert connections == []


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/services/T0/B0/x",
        "https://hooks.slack.com/other/path",
        "http://hooks.slack.com/services/T0/B0/x",
    ],
)
def test_slack_channels_take_incoming_webhook_urls_only(world, strict_callbacks, url):
    with pytest.raises(TargetError, match="Slack incoming webhook URL looks like"):
        services.channel_create(
            account=world.account, actor=world.owner, kind=ChannelKind.SLACK, name="s",
            target=url,
        )  # fmt: skip


def test_a_slack_url_of_the_right_shape_passes(world, strict_callbacks, dns):
    dns.names["hooks.slack.com"] = ["34.200.0.1"]
    assert target_check("slack", "https://hooks.slack.com/services/T0/B0/abc").host == (
        "hooks.slack.com"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "Enter at least one email address."),
        ("not-an-address", "is not a valid email address"),
        (",".join(f"a{i}@x.test" for i in range(11)), "at most 10"),
    ],
)
def test_email_channels_take_valid_addresses(world, value, problem):
    with pytest.raises(TargetError, match=problem):
        services.channel_create(
            account=world.account, actor=world.owner, kind=ChannelKind.EMAIL, name="e",
            target=value,
        )  # fmt: skip


def test_the_webhook_secret_is_shown_once_and_stored_encrypted(world, receiver):
    channel, secret = webhook_channel(world, receiver.url)
    assert secret.startswith("whsec_") and channel.secret_hint == f"whsec_…{secret[-4:]}"
    assert secret not in channel.secret_ciphertext
    assert services.channel_target(channel).secret == secret


def test_target_send_serves_a_channel_configured_anywhere(receiver):
    """What an operator channel in settings would call: a target and a message, no rows."""
    message = Message(
        webhook_id="msg_op", payload={"type": "alert.breaker_open", "data": {}},
        subject="Breaker open", text="Breaker open",
    )  # fmt: skip
    result = target_send(Target(kind="slack", address=receiver.url), message)
    assert result.ok
    assert json.loads(receiver.requests[0].body)["text"] == "Breaker open"
