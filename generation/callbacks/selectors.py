"""Reads of callback deliveries for the console, scoped to the account."""

from django.db.models import Max, QuerySet
from django.http import Http404

from accounts.models import Account
from generation.models import CallbackDelivery


def deliveries_for_account(
    account: Account, *, status: str | None = None
) -> QuerySet[CallbackDelivery]:
    deliveries = (
        CallbackDelivery.objects.filter(task__account=account)
        .select_related("task")
        .annotate(last_attempt_at=Max("attempt_log__attempted_at"))
        .order_by("-created_at", "-id")  # an aggregate drops Meta.ordering
    )
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries


def delivery_get_for_account(*, account: Account, webhook_id: str) -> CallbackDelivery:
    delivery = (
        CallbackDelivery.objects.filter(task__account=account, webhook_id=webhook_id)
        .select_related("task__account")
        .first()
    )
    if delivery is None:
        raise Http404("No such delivery.")
    return delivery
