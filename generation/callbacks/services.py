"""When callbacks are sent: the retry schedule and the delivery services.

Each attempt is claimed with a conditional UPDATE, so two workers never send the same
attempt; it checks the URL again, signs and sends, and its outcome is recorded for the
console. Failures are retried with backoff and jitter for about a day.
"""

import json
import logging
import random
import time
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from accounts.services import audit_record
from accounts.webhooks import WebhookSecretError, webhook_signing_keys
from core import logs, metrics
from core.delivery import DeliveryStatus
from core.ids import new_public_id
from generation.callbacks.signals import callback_attempted
from generation.callbacks.signing import payload_body, webhook_headers
from generation.callbacks.targets import CallbackURLError, callback_target
from generation.callbacks.transport import SendResult, callback_send, short_error
from generation.models import CallbackAttempt, CallbackDelivery, Task, TaskStatus

logger = logging.getLogger(__name__)
# One line per attempt (docs/operations.md#logs): never the URL's path or query, nor a secret.
attempts = logs.get_logger("bytespike.callbacks")

EVENT_TYPES = {
    TaskStatus.COMPLETED: "task.completed",
    TaskStatus.FAILED: "task.failed",
    TaskStatus.CANCELLED: "task.cancelled",
}

# Seconds to wait after the n-th failed attempt (before jitter): about a day in all.
RETRY_DELAYS = (10, 30, 120, 300, 900, 1800, 3600, 7200, 14400, 28800, 28800)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.2
# A claimed attempt holds the delivery this long past its timeout: if the worker dies while
# sending, the beat task finds it due again afterwards.
LEASE_MARGIN = timedelta(seconds=60)
# A message may arrive a little before next_attempt_at (clocks, rounding); it still counts.
EARLY_TOLERANCE = timedelta(seconds=2)
# Deliveries this far past due have probably lost their message; the beat task resends them.
RESEND_GRACE = timedelta(seconds=60)


class RedeliveryBusyError(RuntimeError):
    """Another attempt of the same delivery started at the same moment."""


# --- Retry schedule ---------------------------------------------------------------------------


def retry_delay(attempts: int) -> float | None:
    """Seconds until the next try after ``attempts`` attempts failed; None once we give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    base = RETRY_DELAYS[max(attempts, 1) - 1]
    return base * random.uniform(1 - JITTER, 1 + JITTER)


def _lease() -> timedelta:
    return timedelta(seconds=settings.BYTESPIKE_CALLBACK_TIMEOUT_SECONDS) + LEASE_MARGIN


# --- Deliveries -------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def callback_schedule(task: Task, data: dict) -> CallbackDelivery | None:
    """Create the delivery of a task's terminal event and enqueue its first attempt on commit.

    Call it inside the transaction that makes the task terminal; ``data`` is the task object
    (as the query API returns it). Nothing happens for a task without a callback URL, and a
    second call for the same event returns the delivery the first one created.
    """
    if not task.callback_url:
        return None
    event_type = EVENT_TYPES.get(task.status)
    if event_type is None:
        raise ValueError(f"Task {task.public_id} is not terminal ({task.status}).")
    existing = CallbackDelivery.objects.filter(task=task, event_type=event_type).first()
    if existing is not None:
        return existing
    now = timezone.now()
    payload = {
        "type": event_type,
        "timestamp": _iso(now),
        # Through JSON once, so dates and decimals are stored exactly as they will be sent.
        "data": json.loads(json.dumps(data, cls=DjangoJSONEncoder)),
    }
    delivery = CallbackDelivery.objects.create(
        task=task,
        webhook_id=new_public_id("msg"),
        event_type=event_type,
        url=task.callback_url,
        payload=payload,
        next_attempt_at=now,
    )
    from generation.jobs import callback_deliver_task

    callback_deliver_task.delay_on_commit(delivery.pk)
    return delivery


def _claim(delivery: CallbackDelivery, *, manual: bool) -> bool:
    """Take the next attempt of a delivery, or learn that it is not ours to take.

    The UPDATE only matches the row as we read it (same attempt count, and for a scheduled
    attempt the same due time), so of two workers holding the same message one sends.
    """
    now = timezone.now()
    rows = CallbackDelivery.objects.filter(
        pk=delivery.pk, attempts=delivery.attempts, status=delivery.status
    )
    if not manual:
        due = delivery.next_attempt_at
        if delivery.status != DeliveryStatus.PENDING or due is None or due > now + EARLY_TOLERANCE:
            return False
        rows = rows.filter(next_attempt_at=due)
    changes: dict = {"attempts": F("attempts") + 1}
    if delivery.status == DeliveryStatus.PENDING:
        changes["next_attempt_at"] = now + _lease()
    if rows.update(**changes) != 1:
        return False
    delivery.attempts += 1
    delivery.next_attempt_at = changes.get("next_attempt_at", delivery.next_attempt_at)
    return True


def _attempt(delivery: CallbackDelivery) -> SendResult:
    """Check the URL again, sign, send. Refusals are results too: they are recorded."""
    try:
        target = callback_target(delivery.url)
    except CallbackURLError as error:
        return SendResult(error=short_error(f"Not sent: {error}"))
    try:
        keys = webhook_signing_keys(delivery.task.account)
    except WebhookSecretError as error:
        return SendResult(error=short_error(f"Not sent: {error}"))
    body = payload_body(delivery.payload)
    headers = webhook_headers(
        key=keys.current,
        previous_key=keys.previous,
        webhook_id=delivery.webhook_id,
        timestamp=int(time.time()),
        body=body,
    )
    if delivery.task.request_id:
        # Not signed (Standard Webhooks signs the id, timestamp and body): a receiver quotes it
        # to us to find the submit's logs, nothing more.
        headers["X-Request-ID"] = delivery.task.request_id
    return callback_send(
        target,
        headers=headers,
        body=body,
        timeout=settings.BYTESPIKE_CALLBACK_TIMEOUT_SECONDS,
    )


def _record_outcome(delivery: CallbackDelivery, result: SendResult) -> None:
    now = timezone.now()
    fields = {"last_status_code": result.status_code, "last_error": result.error}
    rows = CallbackDelivery.objects.filter(pk=delivery.pk)
    if result.ok:
        rows.update(
            **fields,
            status=DeliveryStatus.DELIVERED,
            next_attempt_at=None,
            delivered_at=Coalesce("delivered_at", now),
        )
    elif delivery.status == DeliveryStatus.PENDING:
        delay = retry_delay(delivery.attempts)
        if delay is None:
            fields.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
        else:
            fields["next_attempt_at"] = now + timedelta(seconds=delay)
        # If someone claimed a later attempt meanwhile, the schedule is theirs to set.
        rows.filter(status=DeliveryStatus.PENDING, attempts=delivery.attempts).update(**fields)
    else:
        # A manual resend of a delivered or failed delivery changes neither status nor schedule.
        rows.update(**fields)
    delivery.refresh_from_db()


def _outcome(result: SendResult, delivery: CallbackDelivery) -> str:
    if result.ok:
        return "delivered"
    return "retrying" if delivery.status == DeliveryStatus.PENDING else "failed"


def callback_deliver(delivery_id: int, *, manual: bool = False) -> CallbackAttempt | None:
    """Make the next attempt of a delivery if it is due (or now, when ``manual``).

    Returns the recorded attempt, or None when there was nothing to do: unknown, delivered,
    given up, not due yet, or another worker took this attempt. ``attempt.delivery`` carries
    the delivery's state afterwards (status, next_attempt_at).
    """
    delivery = (
        CallbackDelivery.objects.select_related("task__account").filter(pk=delivery_id).first()
    )
    if delivery is None or not _claim(delivery, manual=manual):
        return None
    task = delivery.task
    context = {"task_id": task.public_id, "account_id": task.account.public_id}
    if task.request_id:
        context["request_id"] = task.request_id
    with logs.bound(**context):
        return _deliver(delivery, manual=manual)


def _deliver(delivery: CallbackDelivery, *, manual: bool) -> CallbackAttempt:
    attempted_at = timezone.now()
    started = time.monotonic()
    result = _attempt(delivery)
    result.duration_ms = round((time.monotonic() - started) * 1000)
    attempt = CallbackAttempt.objects.create(
        delivery=delivery,
        attempted_at=attempted_at,
        status_code=result.status_code,
        error=result.error,
        duration_ms=result.duration_ms,
        response_excerpt=result.excerpt,
        manual=manual,
    )
    _record_outcome(delivery, result)
    outcome = _outcome(result, delivery)
    metrics.CALLBACK_DELIVERIES.labels(outcome).inc()
    callback_attempted.send(
        sender=CallbackDelivery, account_id=delivery.task.account_id, delivered=result.ok
    )
    attempts.info(
        "callback.attempt",
        webhook_id=delivery.webhook_id,
        attempt=delivery.attempts,
        manual=manual,
        outcome=outcome,
        status_code=result.status_code,
        duration_ms=result.duration_ms,
        host=_host(delivery.url),
        **({"error": result.error} if result.error else {}),
    )
    return attempt


def _host(url: str) -> str:
    """The URL's host: where a callback went, without the path or query that may hold a token."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def callback_redeliver(delivery: CallbackDelivery, actor: User | None) -> CallbackAttempt:
    """Send a delivery again now (same webhook-id and payload, new timestamp and signature).

    Works in any status; a success marks it delivered. A pending delivery that fails again
    keeps its retry schedule, which counts this attempt.
    """
    attempt = callback_deliver(delivery.pk, manual=True)
    if attempt is None:
        raise RedeliveryBusyError("Another attempt of this delivery just started. Try again.")
    audit_record(
        account=delivery.task.account,
        actor=actor,
        action="callback.redeliver",
        target=delivery.webhook_id,
        status_code=attempt.status_code,
        error=attempt.error,
    )
    from generation.jobs import callback_enqueue_next

    callback_enqueue_next(attempt.delivery)
    return attempt


def deliveries_due(*, limit: int = 500) -> list[int]:
    """Pending deliveries well past due: their message was lost, or they waited longer than a
    broker countdown may be (the beat task enqueues them)."""
    cutoff = timezone.now() - RESEND_GRACE
    return list(
        CallbackDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=cutoff)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
