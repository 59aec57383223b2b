"""Delivering callbacks to a real local receiver: headers, signatures, retries, refusals."""

import json
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from accounts.webhooks import webhook_secret_rotate
from core.delivery import DeliveryStatus
from generation.callbacks import services
from generation.callbacks.services import (
    MAX_ATTEMPTS,
    callback_deliver,
    callback_redeliver,
    callback_schedule,
)
from generation.callbacks.targets import check_callback_url
from generation.jobs import (
    MAX_COUNTDOWN_SECONDS,
    callback_deliver_task,
    callback_enqueue_next,
    callbacks_resend_due,
)
from generation.models import CallbackAttempt, CallbackDelivery
from tests.callbacks.conftest import Answer, Receiver, finished_task, make_due, task_data
from tests.conftest import run_enqueued

pytestmark = pytest.mark.django_db(transaction=False)

DELIVER = "generation.jobs.callback_deliver_task"


def run_next(enqueued) -> None:
    """Run the first recorded job, as a worker would; what it enqueues stays recorded.
    (run_enqueued would also run those at once, before they are due.)"""
    run_enqueued([enqueued.pop(0)])


@pytest.fixture
def schedule(world, image_model, enqueued, django_capture_on_commit_callbacks):
    """A finished task of the world's account with this callback URL, and its delivery as the
    pipeline schedules it (enqueued on commit: see ``enqueued``)."""

    def make(url: str, *, status: str = "completed") -> CallbackDelivery:
        task = finished_task(world.account, image_model, url, status=status)
        with django_capture_on_commit_callbacks(execute=True):
            return callback_schedule(task, task_data(task))

    return make


# --- Scheduling ---------------------------------------------------------------------------------


def test_schedule_creates_the_delivery_and_enqueues_it_on_commit(schedule, receiver, enqueued):
    delivery = schedule(receiver.url)

    assert delivery.webhook_id.startswith("msg_") and len(delivery.webhook_id) == 30
    assert delivery.event_type == "task.completed"
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.payload["type"] == "task.completed"
    assert delivery.payload["timestamp"].endswith("Z")
    assert delivery.payload["data"]["task_id"] == delivery.task.public_id
    assert [(job.name, job.args) for job in enqueued] == [(DELIVER, (delivery.pk,))]


@pytest.mark.parametrize(
    ("status", "event"),
    [("completed", "task.completed"), ("failed", "task.failed"), ("cancelled", "task.cancelled")],
)
def test_event_type_follows_the_terminal_status(
    schedule, world, image_model, enqueued, status, event
):
    delivery = schedule("https://hooks.example.com/", status=status)

    assert delivery.event_type == event == delivery.payload["type"]


def test_no_delivery_without_a_callback_url_and_none_twice(schedule, world, image_model, enqueued):
    task = finished_task(world.account, image_model, "")
    assert callback_schedule(task, task_data(task)) is None

    task = finished_task(world.account, image_model, "https://hooks.example.com/")
    first = callback_schedule(task, task_data(task))
    assert callback_schedule(task, task_data(task)) == first
    assert CallbackDelivery.objects.filter(task=task).count() == 1


def test_a_task_that_is_not_finished_has_no_callback_yet(schedule, world, image_model):
    task = finished_task(world.account, image_model, "https://hooks.example.com/", "running")

    with pytest.raises(ValueError, match="not terminal"):
        callback_schedule(task, task_data(task))


# --- A receiver that answers --------------------------------------------------------------------


def test_receiver_gets_a_signed_callback_with_the_exact_body(
    schedule, world, image_model, receiver, enqueued
):
    secret = webhook_secret_rotate(account=world.account, actor=world.owner)
    delivery = schedule(receiver.url)

    before = int(time.time())
    run_enqueued(enqueued)

    (request,) = receiver.requests
    assert request.path == "/hooks/bytespike"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "ByteSpike-Webhooks/1"
    assert request.headers["webhook-id"] == delivery.webhook_id
    assert before <= int(request.headers["webhook-timestamp"]) <= int(time.time())
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    event = Webhook(secret).verify(request.body, request.headers)
    assert event == json.loads(request.body)
    assert event["type"] == "task.completed"
    assert event["data"]["task_id"] == delivery.task.public_id

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 1
    assert delivery.last_status_code == 200
    assert delivery.delivered_at is not None
    assert delivery.next_attempt_at is None
    attempt = delivery.attempt_log.get()
    assert (attempt.status_code, attempt.error, attempt.manual) == (200, "", False)
    assert attempt.response_excerpt == '{"ok": true}'
    assert enqueued == []  # nothing more to do


def test_after_a_rotation_callbacks_verify_with_the_old_and_the_new_secret(
    schedule, world, image_model, receiver, enqueued, settings
):
    settings.BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS = 24 * 3600
    old = webhook_secret_rotate(account=world.account, actor=world.owner)
    new = webhook_secret_rotate(account=world.account, actor=world.owner)
    delivery = schedule(receiver.url)

    run_enqueued(enqueued)

    (request,) = receiver.requests
    entries = request.headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(entry.startswith("v1,") for entry in entries)
    # A receiver still on the old secret and one already on the new both accept it.
    for secret in (old, new):
        assert Webhook(secret).verify(request.body, request.headers)["type"] == "task.completed"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


def test_after_the_overlap_window_only_the_new_secret_signs(
    schedule, world, image_model, receiver, enqueued, settings
):
    settings.BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS = 24 * 3600
    now = timezone.now()
    old = webhook_secret_rotate(account=world.account, actor=world.owner, now=now - timedelta(2))
    # Rotated 24 h and a minute ago: the window closed a minute ago.
    rotated = now - timedelta(hours=24, minutes=1)
    new = webhook_secret_rotate(account=world.account, actor=world.owner, now=rotated)
    delivery = schedule(receiver.url)

    run_enqueued(enqueued)

    (request,) = receiver.requests
    assert " " not in request.headers["webhook-signature"]
    Webhook(new).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, request.headers)
    # Forgotten, not merely unused.
    world.account.refresh_from_db()
    assert world.account.webhook_previous_secret_ciphertext == ""
    assert world.account.webhook_previous_secret_expires_at is None
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


def test_a_task_submitted_before_any_secret_still_gets_signed_callbacks(
    schedule, world, image_model, receiver, enqueued
):
    delivery = schedule(receiver.url)

    callback_deliver(delivery.pk)

    world.account.refresh_from_db()
    assert world.account.webhook_secret_hint.startswith("whsec_…")
    (request,) = receiver.requests
    assert request.headers["webhook-signature"].startswith("v1,")


def test_down_then_up_retries_with_the_same_webhook_id(
    schedule, world, image_model, local_callbacks, enqueued
):
    secret = webhook_secret_rotate(account=world.account, actor=world.owner)
    receiver = Receiver()  # not listening yet: connections are refused
    delivery = schedule(receiver.url)
    try:
        run_next(enqueued)  # attempt 1
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING
        assert delivery.attempts == 1
        assert delivery.last_status_code is None
        assert "Could not connect" in delivery.last_error
        wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
        assert 7 <= wait <= 13  # 10 s, give or take 20 %
        assert [job.name for job in enqueued] == [DELIVER]  # the next attempt, on a countdown

        # The message arrives early (or twice): nothing is sent before it is due.
        assert callback_deliver(delivery.pk) is None

        make_due(delivery)
        run_next(enqueued)  # attempt 2, still down
        delivery.refresh_from_db()
        assert delivery.attempts == 2
        wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
        assert 23 <= wait <= 37  # then 30 s

        receiver.start()
        make_due(delivery)
        run_next(enqueued)  # attempt 3: delivered
    finally:
        receiver.stop()

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 3
    assert enqueued == []
    (request,) = receiver.requests
    assert request.headers["webhook-id"] == delivery.webhook_id
    Webhook(secret).verify(request.body, request.headers)
    codes = list(delivery.attempt_log.order_by("attempted_at", "id").values_list("status_code"))
    assert codes == [(None,), (None,), (200,)]


def test_error_answers_are_retried_then_the_delivery_fails(
    schedule, world, image_model, receiver, enqueued
):
    receiver.answer(Answer(status=500, body=b"boom"), Answer(status=503))
    delivery = schedule(receiver.url)

    callback_deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == ("pending", 500)
    assert delivery.last_error == "The receiver answered HTTP 500."
    assert delivery.attempt_log.get().response_excerpt == "boom"

    # The last attempt of the schedule fails too: the delivery is given up.
    CallbackDelivery.objects.filter(pk=delivery.pk).update(attempts=MAX_ATTEMPTS - 1)
    make_due(delivery)
    callback_deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_status_code == 503
    assert delivery.next_attempt_at is None
    assert callback_deliver(delivery.pk) is None


def test_attempts_are_counted_by_outcome_in_the_metrics(schedule, receiver, enqueued):
    def counts() -> dict[str, float]:
        name = "bytespike_callback_deliveries_total"
        outcomes = ("delivered", "retrying", "failed")
        return {o: REGISTRY.get_sample_value(name, {"outcome": o}) or 0 for o in outcomes}

    before = counts()
    receiver.answer(Answer(status=500), Answer(status=503), Answer())
    failing = schedule(receiver.url)
    callback_deliver(failing.pk)  # another attempt is scheduled
    CallbackDelivery.objects.filter(pk=failing.pk).update(attempts=MAX_ATTEMPTS - 1)
    make_due(failing)
    callback_deliver(failing.pk)  # the last one
    callback_deliver(schedule(receiver.url).pk)

    after = counts()
    assert {o: after[o] - before[o] for o in after} == {"delivered": 1, "retrying": 1, "failed": 1}


def test_retry_schedule_lasts_about_a_day():
    total = sum(services.RETRY_DELAYS)
    assert 20 * 3600 <= total <= 28 * 3600
    delays = [services.retry_delay(n) for n in range(1, MAX_ATTEMPTS)]
    assert all(
        0.8 * base <= d <= 1.2 * base for d, base in zip(delays, services.RETRY_DELAYS, strict=True)
    )
    assert services.retry_delay(MAX_ATTEMPTS) is None


def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    schedule, world, image_model, receiver, connections
):
    receiver.answer(
        Answer(status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
    )
    delivery = schedule(receiver.url)

    callback_deliver(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_status_code == 302
    assert delivery.last_error == "Redirect not followed (HTTP 302)."
    assert len(receiver.requests) == 1
    assert [address[0] for address in connections] == ["127.0.0.1"]


def test_a_redirect_to_the_same_receiver_is_not_followed_either(
    schedule, world, image_model, receiver
):
    receiver.answer(Answer(status=307, headers={"Location": receiver.url + "/elsewhere"}))
    delivery = schedule(receiver.url)

    callback_deliver(delivery.pk)

    assert [request.path for request in receiver.requests] == ["/hooks/bytespike"]
    assert CallbackAttempt.objects.get(delivery=delivery).status_code == 307


def test_a_slow_receiver_hits_the_timeout(schedule, world, image_model, receiver, settings):
    settings.BYTESPIKE_CALLBACK_TIMEOUT_SECONDS = 0.5
    receiver.answer(Answer(delay=3))
    delivery = schedule(receiver.url)

    started = time.monotonic()
    attempt = callback_deliver(delivery.pk)

    assert time.monotonic() - started < 2
    assert attempt.status_code is None
    assert attempt.error.startswith("Timed out")
    assert 400 <= attempt.duration_ms < 2000
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING


def test_a_receiver_dripping_its_answer_cannot_outlast_the_timeout(
    schedule, world, image_model, receiver, settings
):
    settings.BYTESPIKE_CALLBACK_TIMEOUT_SECONDS = 0.6
    # Headers at once, then one byte every 0.1 s: each read is quick, the whole is not.
    receiver.answer(Answer(status=200, body=b"x" * 100, drip=0.1))
    delivery = schedule(receiver.url)

    started = time.monotonic()
    attempt = callback_deliver(delivery.pk)

    assert time.monotonic() - started < 2
    assert attempt.error.startswith("Timed out")
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING


def test_only_a_few_kilobytes_of_the_answer_are_read(schedule, world, image_model, receiver):
    receiver.answer(Answer(status=200, body=b"<p>" + b"a" * 5_000_000))
    delivery = schedule(receiver.url)

    attempt = callback_deliver(delivery.pk)

    assert attempt.status_code == 200
    assert len(attempt.response_excerpt) == 500
    assert attempt.response_excerpt.startswith("<p>aaa")


# --- Refusals at delivery time ------------------------------------------------------------------


def test_dns_rebinding_after_the_check_is_refused_and_connects_nowhere(
    schedule, world, image_model, strict_callbacks, dns, connections
):
    dns.names["hooks.example.com"] = ["93.184.215.14"]
    url = check_callback_url("https://hooks.example.com/hook")
    delivery = schedule(url)

    dns.names["hooks.example.com"] = ["10.0.0.5"]  # the attacker's DNS answers differently now
    attempt = callback_deliver(delivery.pk)

    assert connections == []
    assert attempt.status_code is None
    assert attempt.error == "Not sent: callback_url must resolve to public addresses only."
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/hook",
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:127.0.0.1]/hook",
        "https://2130706433/hook",
        "https://metadata.google.internal/computeMetadata/v1/",
    ],
)
def test_urls_that_would_be_refused_at_submit_are_refused_at_delivery(
    schedule, world, image_model, strict_callbacks, dns, connections, url
):
    dns.names["hooks.example.com"] = ["93.184.215.14"]
    delivery = schedule(url)

    attempt = callback_deliver(delivery.pk)

    assert connections == []
    assert attempt.error.startswith("Not sent: callback_url")


def test_connection_is_pinned_to_the_address_that_was_checked(
    schedule, world, image_model, receiver, dns, connections, settings
):
    # The receiver's name resolves to it once; any later lookup would say somewhere else.
    settings.BYTESPIKE_CALLBACK_ALLOWED_HOSTS = ["hooks.test.example"]
    answers = iter([["127.0.0.1"]])

    class Rebinding(dict):
        def __getitem__(self, name):
            return next(answers, ["10.255.255.1"])

        def __contains__(self, name):
            return name == "hooks.test.example"

    dns.names = Rebinding()
    delivery = schedule(f"http://hooks.test.example:{receiver.port}/hook")

    attempt = callback_deliver(delivery.pk)

    assert attempt.status_code == 200
    assert dns.lookups == ["hooks.test.example"]
    assert [address[0] for address in connections] == ["127.0.0.1"]
    assert receiver.requests[0].headers["host"] == f"hooks.test.example:{receiver.port}"


# --- One attempt, one sender ------------------------------------------------------------------


def test_duplicate_messages_send_once(schedule, world, image_model, receiver, enqueued):
    delivery = schedule(receiver.url)

    callback_deliver_task(delivery.pk)
    callback_deliver_task(delivery.pk)  # the same message again (redelivered by the broker)

    assert len(receiver.requests) == 1
    assert CallbackAttempt.objects.filter(delivery=delivery).count() == 1


def test_two_workers_holding_the_same_attempt_claim_it_once(schedule, world, image_model, enqueued):
    delivery = schedule("https://hooks.example.com/")
    first = CallbackDelivery.objects.get(pk=delivery.pk)
    second = CallbackDelivery.objects.get(pk=delivery.pk)

    assert services._claim(first, manual=False) is True
    assert services._claim(second, manual=False) is False
    delivery.refresh_from_db()
    assert delivery.attempts == 1
    # While it is being sent, the delivery is leased: nobody else finds it due.
    assert delivery.next_attempt_at > timezone.now()


# --- Countdowns and the beat task ---------------------------------------------------------------


def test_countdowns_are_capped_and_later_attempts_left_to_beat(
    schedule, world, image_model, monkeypatch
):
    delivery = schedule("https://hooks.example.com/")
    sent = []
    monkeypatch.setattr(
        callback_deliver_task,
        "apply_async",
        lambda args=None, kwargs=None, **options: sent.append((args, options)),
    )

    delivery.next_attempt_at = timezone.now() + timedelta(seconds=120)
    assert callback_enqueue_next(delivery) is True
    ((args, options),) = sent
    assert args == (delivery.pk,)
    assert 115 <= options["countdown"] <= MAX_COUNTDOWN_SECONDS

    delivery.next_attempt_at = timezone.now() + timedelta(hours=2)
    assert callback_enqueue_next(delivery) is False
    delivery.status = DeliveryStatus.DELIVERED
    delivery.next_attempt_at = timezone.now()
    assert callback_enqueue_next(delivery) is False
    assert len(sent) == 1


def test_beat_resends_deliveries_long_past_due(schedule, world, image_model, enqueued):
    now = timezone.now()
    lost = schedule("https://hooks.example.com/a")
    just_due = schedule("https://hooks.example.com/b")
    later = schedule("https://hooks.example.com/c")
    done = schedule("https://hooks.example.com/d")
    enqueued.clear()
    CallbackDelivery.objects.filter(pk=lost.pk).update(next_attempt_at=now - timedelta(minutes=5))
    CallbackDelivery.objects.filter(pk=just_due.pk).update(next_attempt_at=now)
    CallbackDelivery.objects.filter(pk=later.pk).update(next_attempt_at=now + timedelta(hours=1))
    CallbackDelivery.objects.filter(pk=done.pk).update(
        status=DeliveryStatus.DELIVERED, next_attempt_at=now - timedelta(hours=1)
    )

    assert callbacks_resend_due() == 1
    assert [(job.name, job.args) for job in enqueued] == [(DELIVER, (lost.pk,))]


# --- Manual redelivery ------------------------------------------------------------------------


def test_redelivery_sends_the_same_id_and_body_with_a_new_signature(
    schedule, world, image_model, receiver, enqueued, monkeypatch
):
    secret = webhook_secret_rotate(account=world.account, actor=world.owner)
    delivery = schedule(receiver.url)
    callback_deliver(delivery.pk)

    # A second later by the clock the signer reads (a new second, so a new timestamp).
    later = int(receiver.requests[0].headers["webhook-timestamp"]) + 1
    monkeypatch.setattr(
        services, "time", SimpleNamespace(time=lambda: later, monotonic=time.monotonic)
    )
    attempt = callback_redeliver(delivery, world.admin)

    first, second = receiver.requests
    assert second.headers["webhook-id"] == first.headers["webhook-id"] == delivery.webhook_id
    assert second.body == first.body
    assert second.headers["webhook-timestamp"] != first.headers["webhook-timestamp"]
    assert second.headers["webhook-signature"] != first.headers["webhook-signature"]
    Webhook(secret).verify(second.body, second.headers)
    assert attempt.manual is True
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 2


def test_redelivery_of_a_failed_delivery_that_succeeds_marks_it_delivered(
    schedule, world, image_model, receiver, enqueued
):
    delivery = schedule(receiver.url)
    enqueued.clear()
    CallbackDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED, attempts=MAX_ATTEMPTS, next_attempt_at=None
    )

    callback_redeliver(delivery, world.owner)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == MAX_ATTEMPTS + 1
    assert enqueued == []


def test_redelivery_of_a_pending_delivery_that_fails_keeps_retrying(
    schedule, world, image_model, local_callbacks, enqueued
):
    delivery = schedule(Receiver().url)  # nobody listens
    enqueued.clear()

    attempt = callback_redeliver(delivery, world.owner)

    assert attempt.manual and "Could not connect" in attempt.error
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.next_attempt_at > timezone.now()
    assert [job.name for job in enqueued] == [DELIVER]
