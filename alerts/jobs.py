"""Background jobs of alerts: evaluating accounts' rules and sending their deliveries."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from alerts import operators, services
from alerts.models import AlertDelivery
from generation.jobs import enqueue_when_due


@shared_task
def alerts_evaluate_account(account_id: int, kinds: list[str] | None = None) -> int:
    return len(services.account_evaluate(account_id=account_id, kinds=kinds))


@shared_task
def alerts_evaluate_recent() -> int:
    """Beat's sweep: every account charged since about two sweeps ago (overlapping sweeps cost
    a re-evaluation, never a second alert), one job each."""
    since = timezone.now() - timedelta(seconds=2 * settings.BYTESPIKE_ALERTS_EVALUATE_SECONDS)
    accounts = services.accounts_to_evaluate(since=since)
    for account_id in accounts:
        alerts_evaluate_account.delay(account_id)
    return len(accounts)


def alert_enqueue_next(delivery: AlertDelivery) -> bool:
    """Enqueue the delivery's next attempt if it is due within a countdown (later ones are
    enqueued by beat, ``alert_deliveries_resend_due``)."""
    return enqueue_when_due(alert_deliver, delivery)


@shared_task(acks_late=True)
def alert_deliver(delivery_id: int) -> str:
    delivery = services.alert_deliver(delivery_id)
    if delivery is None:
        return "skipped"  # whoever made the attempt schedules the next one
    alert_enqueue_next(delivery)
    return delivery.status


@shared_task
def alert_deliveries_resend_due() -> int:
    due = services.deliveries_due()
    for delivery_id in due:
        alert_deliver.delay(delivery_id)
    return len(due)


# --- Operators (alerts/operators.py) -------------------------------------------------------------

OPERATOR_RETRIES = 10  # about 8.5 hours of attempts, 30 s doubling to an hour between them


@shared_task(bind=True, acks_late=True, max_retries=OPERATOR_RETRIES)
def operator_alert_send(self, index: int, message: dict) -> str:
    if operators.operator_send(index, message):
        return "delivered"
    raise self.retry(countdown=min(30 * 2**self.request.retries, 3600))


@shared_task
def operator_checks() -> dict:
    return operators.operator_checks()


@shared_task
def operator_wallets_check() -> int:
    return operators.wallets_check()
