"""Background jobs of billing."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from billing import holds, notifications, usage


@shared_task
def low_balance_alert(account_id: int) -> int:
    return notifications.low_balance_email(account_id=account_id)


@shared_task
def release_stale_holds() -> int:
    # A synchronous request never runs this long; its process must have died mid-request.
    older_than = timedelta(seconds=settings.BYTESPIKE_HOLD_STALE_SECONDS)
    return holds.holds_release_stale(older_than=older_than)


@shared_task
def prune_key_spend() -> int:
    return usage.key_spend_prune()


@shared_task
def send_statements() -> int:
    return notifications.statement_emails_send()


@shared_task
def payment_receipt(payment_id: int) -> int:
    return notifications.payment_receipt_email(payment_id=payment_id)
