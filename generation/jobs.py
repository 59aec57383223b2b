"""Background jobs of generation: thin wrappers that load by id and call a service."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from core import tracing
from core.delivery import DeliveryStatus
from generation import health
from generation.callbacks.services import callback_deliver, deliveries_due
from generation.models import CallbackDelivery

# --- Callbacks --------------------------------------------------------------------------------

# Brokers hold delayed messages badly for long (Redis redelivers them after its visibility
# timeout), so a countdown never exceeds this; later attempts are enqueued by the beat task.
MAX_COUNTDOWN_SECONDS = 300


def enqueue_when_due(job, delivery) -> bool:
    """Enqueue ``job`` for a delivery's next attempt (a callback's, an alert's) if it is pending
    and due within a countdown; later attempts are left to beat."""
    if delivery.status != DeliveryStatus.PENDING or delivery.next_attempt_at is None:
        return False
    delay = (delivery.next_attempt_at - timezone.now()) / timedelta(seconds=1)
    if delay > MAX_COUNTDOWN_SECONDS:
        return False
    job.apply_async((delivery.pk,), countdown=max(0.0, delay))
    return True


def callback_enqueue_next(delivery: CallbackDelivery) -> bool:
    """Enqueue the delivery's next attempt if it is pending and due within a countdown."""
    return enqueue_when_due(callback_deliver_task, delivery)


@shared_task(acks_late=True)
def callback_deliver_task(delivery_id: int) -> str:
    attempt = callback_deliver(delivery_id)
    if attempt is None:
        # Not due, already done, or another worker's: whoever made the attempt schedules the
        # next one, so duplicate messages never multiply.
        return "skipped"
    callback_enqueue_next(attempt.delivery)
    return attempt.delivery.status


@shared_task
def callbacks_resend_due() -> int:
    due = deliveries_due()
    for delivery_id in due:
        callback_deliver_task.delay(delivery_id)
    return len(due)


# --- The task pipeline ------------------------------------------------------------------------


@shared_task(acks_late=True)
def task_advance(task_id: int, lease: str) -> str:
    """One step of an async task; schedules the next one while the task is not finished."""
    from generation import services

    with tracing.span("task step", **{"bytespike.task": task_id}):
        countdown = services.task_advance(task_id, lease)
    if countdown is None:
        return "done"
    task_advance.apply_async((task_id, lease), countdown=countdown)
    return f"again in {countdown:.1f} s"


@shared_task
def tasks_reap() -> dict:
    from generation import services

    return services.tasks_reap()


# --- Upstream health --------------------------------------------------------------------------


@shared_task
def deployment_minutes_prune() -> int:
    return health.prune()


# --- Generated media --------------------------------------------------------------------------


@shared_task
def artifacts_expire() -> int:
    from generation import files

    return files.artifacts_expire()
