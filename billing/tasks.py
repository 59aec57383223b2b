"""Background jobs of billing."""

from datetime import timedelta

from celery import shared_task

from billing import notifications, services


@shared_task
def low_balance_alert(account_id: int) -> int:
    return notifications.low_balance_email(account_id=account_id)


@shared_task
def release_stale_holds() -> int:
    # A synchronous request never runs this long; its process must have died mid-request.
    return services.holds_release_stale(older_than=timedelta(minutes=15))


@shared_task
def prune_key_spend() -> int:
    return services.key_spend_prune()
