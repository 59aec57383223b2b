"""Reads of alerts for the console and the API, scoped to the account (another account's
object is a 404)."""

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from accounts.models import Account
from alerts.models import Alert, AlertDelivery, AlertRule, NotificationChannel


def channels_for_account(account: Account) -> QuerySet[NotificationChannel]:
    return NotificationChannel.objects.filter(account=account).order_by("created_at", "id")


def channel_get_for_account(*, account: Account, public_id: str) -> NotificationChannel:
    channel = channels_for_account(account).filter(public_id=public_id).first()
    if channel is None:
        raise Http404("No such channel.")
    return channel


def rules_for_account(account: Account) -> QuerySet[AlertRule]:
    return (
        AlertRule.objects.filter(account=account)
        .select_related("api_key", "account")
        .prefetch_related("channels")
        .order_by("created_at", "id")
    )


def rule_get_for_account(*, account: Account, public_id: str) -> AlertRule:
    rule = rules_for_account(account).filter(public_id=public_id).first()
    if rule is None:
        raise Http404("No such rule.")
    return rule


def alerts_for_account(account: Account) -> QuerySet[Alert]:
    return (
        Alert.objects.filter(account=account)
        .select_related("rule")
        .prefetch_related(
            Prefetch("deliveries", queryset=AlertDelivery.objects.order_by("created_at", "id"))
        )
        .order_by("-created_at", "-id")
    )


def delivery_get_for_account(*, account: Account, webhook_id: str) -> AlertDelivery:
    delivery = (
        AlertDelivery.objects.filter(alert__account=account, webhook_id=webhook_id)
        .select_related("alert")
        .first()
    )
    if delivery is None:
        raise Http404("No such delivery.")
    return delivery
