"""Every write of alerts: channels and rules, firing once per crossing, and the deliveries.

Firing is a conditional UPDATE of the rule's ``AlertState`` for the subject (armed -> fired), in
the transaction that creates the ``Alert`` and its deliveries; the alert's ``dedupe_key`` (rule,
subject, crossing number) is unique besides. So two evaluations racing over the same crossing,
in two workers or two processes, fire one alert. Deliveries are sent by workers only
(``alert_deliver``), each attempt claimed by a conditional UPDATE like a task callback's, and
retried with the callbacks' backoff (about a day).
"""

import base64
import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account, User
from accounts.services import audit_record
from accounts.webhooks import SECRET_PREFIX, secret_hint
from alerts.delivery import Message, Target, target_check, target_send
from alerts.evaluation import Condition, Figures, rule_conditions
from alerts.models import (
    Alert,
    AlertDelivery,
    AlertRule,
    AlertState,
    ChannelKind,
    DeliveryStatus,
    NotificationChannel,
    RuleKind,
)
from core import crypto, ratelimit
from core.errors import ApiError
from generation.callbacks.services import EARLY_TOLERANCE, LEASE_MARGIN, retry_delay
from generation.callbacks.transport import SendResult
from keys.models import ApiKey, ManagementKey

logger = logging.getLogger(__name__)

SECRET_BYTES = 32
TEST_ALERTS_PER_HOUR = 20
THRESHOLD_KINDS = (RuleKind.BALANCE_BELOW, RuleKind.MONTHLY_SPEND)


# Who changed something: a person in the console, or a management key through the API.
Actor = User | ManagementKey | None


def _user(actor: Actor) -> User | None:
    return actor if isinstance(actor, User) else None


def _audit(*, account: Account, actor: Actor, action: str, target: str, **details) -> None:
    if isinstance(actor, ManagementKey):
        label = f"management key {actor.name} ({actor.masked})"
        audit_record(
            account=account, actor=None, actor_label=label, action=action, target=target,
            **details,
        )  # fmt: skip
    else:
        audit_record(account=account, actor=actor, action=action, target=target, **details)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- Channels --------------------------------------------------------------------------------


def _new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _target_value(kind: str, target: str) -> str:
    """The target as stored: addresses normalised; a URL checked by the SSRF rules (raises
    ``TargetError`` with the problem, for the form)."""
    checked = target_check(kind, target.strip())
    return ", ".join(checked) if kind == ChannelKind.EMAIL else target.strip()


def channel_create(
    *, account: Account, actor: Actor, kind: str, name: str, target: str
) -> tuple[NotificationChannel, str]:
    """The new channel and, for a webhook, its signing secret: shown once, never again."""
    secret = _new_secret() if kind == ChannelKind.WEBHOOK else ""
    with transaction.atomic():
        channel = NotificationChannel.objects.create(
            account=account,
            kind=kind,
            name=name.strip(),
            target=_target_value(kind, target),
            secret_ciphertext=crypto.encrypt(secret) if secret else "",
            secret_hint=secret_hint(secret) if secret else "",
            created_by=_user(actor),
        )
        _audit(
            account=account, actor=actor, action="alert_channel.create", target=channel.name,
            kind=kind,
        )  # fmt: skip
    return channel, secret


def channel_update(
    *, channel: NotificationChannel, actor: Actor, name: str, target: str, enabled: bool
) -> NotificationChannel:
    channel.name = name.strip()
    channel.target = _target_value(channel.kind, target)
    channel.enabled = enabled
    with transaction.atomic():
        channel.save(update_fields=["name", "target", "enabled"])
        _audit(
            account=channel.account, actor=actor, action="alert_channel.update",
            target=channel.name, enabled=enabled,
        )  # fmt: skip
    return channel


def channel_secret_rotate(*, channel: NotificationChannel, actor: Actor) -> str:
    """A new signing secret for a webhook channel, shown once; the old one stops at once."""
    if channel.kind != ChannelKind.WEBHOOK:
        raise ValueError("Only webhook channels sign their messages.")
    secret = _new_secret()
    channel.secret_ciphertext = crypto.encrypt(secret)
    channel.secret_hint = secret_hint(secret)
    with transaction.atomic():
        channel.save(update_fields=["secret_ciphertext", "secret_hint"])
        _audit(
            account=channel.account, actor=actor, action="alert_channel.rotate",
            target=channel.name,
        )  # fmt: skip
    return secret


def channel_delete(*, channel: NotificationChannel, actor: Actor) -> None:
    """Delete a channel; the alerts sent to it keep their deliveries (with its name)."""
    with transaction.atomic():
        _audit(
            account=channel.account, actor=actor, action="alert_channel.delete",
            target=channel.name,
        )  # fmt: skip
        channel.delete()


def channel_target(channel: NotificationChannel) -> Target:
    secret = crypto.decrypt(channel.secret_ciphertext) if channel.secret_ciphertext else ""
    return Target(kind=channel.kind, address=channel.target, secret=secret)


class TestAlertLimitError(ApiError):
    """Too many test alerts from one account: they send mail and requests on its behalf."""

    def __init__(self):
        super().__init__(
            429, "rate_limit_exceeded",
            f"At most {TEST_ALERTS_PER_HOUR} test alerts an hour; try again later.",
            headers={"Retry-After": "3600"},
        )  # fmt: skip


def channel_test(*, channel: NotificationChannel, actor: Actor) -> AlertDelivery:
    """Queue a test alert to one channel (enabled or not): its delivery, to follow. At most
    ``TEST_ALERTS_PER_HOUR`` per account (``TestAlertLimitError``)."""
    if not ratelimit.allow(
        "alert-test", channel.account_id, limit=TEST_ALERTS_PER_HOUR, period=3600
    ):
        raise TestAlertLimitError
    now = timezone.now()
    with transaction.atomic():
        alert = Alert.objects.create(
            account=channel.account,
            event_type="alert.test",
            level="test",
            title=f"Test alert for {channel.name}",
            dedupe_key=f"test:{channel.public_id}:{secrets.token_hex(8)}",
            created_at=now,
        )
        alert.data = _alert_data(alert, None, {"test": True})
        alert.save(update_fields=["data"])
        (delivery,) = _deliveries_create(alert, [channel])
        _audit(
            account=channel.account, actor=actor, action="alert_channel.test",
            target=channel.name,
        )  # fmt: skip
    return delivery


# --- Rules -----------------------------------------------------------------------------------


def _rule_fields(kind: str, threshold, api_key, streak) -> dict:
    """Only the fields the kind takes (the database refuses the others anyway)."""
    return {
        "threshold": threshold if kind in THRESHOLD_KINDS else None,
        "api_key": api_key if kind == RuleKind.KEY_QUOTA else None,
        "streak": streak if kind == RuleKind.CALLBACK_FAILURES else None,
    }


def _evaluate_on_commit(account_id: int) -> None:
    from alerts.jobs import alerts_evaluate_account

    alerts_evaluate_account.delay_on_commit(account_id)


def rule_create(
    *,
    account: Account,
    actor: Actor,
    kind: str,
    channels: list[NotificationChannel],
    threshold: int | None = None,
    api_key: ApiKey | None = None,
    streak: int | None = None,
    enabled: bool = True,
) -> AlertRule:
    """A new rule, evaluated at once (after commit): one whose condition already holds fires
    once, so its owner learns where things stand."""
    with transaction.atomic():
        rule = AlertRule.objects.create(
            account=account, kind=kind, enabled=enabled, created_by=_user(actor),
            **_rule_fields(kind, threshold, api_key, streak),
        )  # fmt: skip
        rule.channels.set(channels)
        _audit(
            account=account, actor=actor, action="alert_rule.create", target=rule.public_id,
            kind=kind,
        )  # fmt: skip
        _evaluate_on_commit(account.pk)
    return rule


def rule_update(
    *,
    rule: AlertRule,
    actor: Actor,
    channels: list[NotificationChannel],
    threshold: int | None = None,
    api_key: ApiKey | None = None,
    streak: int | None = None,
    enabled: bool = True,
) -> AlertRule:
    """Change a rule (not its kind). A new threshold, key or streak is a new subject: armed."""
    for name, value in _rule_fields(rule.kind, threshold, api_key, streak).items():
        setattr(rule, name, value)
    rule.enabled = enabled
    with transaction.atomic():
        rule.save(update_fields=["threshold", "api_key", "streak", "enabled"])
        rule.channels.set(channels)
        _audit(
            account=rule.account, actor=actor, action="alert_rule.update",
            target=rule.public_id, enabled=enabled,
        )  # fmt: skip
        _evaluate_on_commit(rule.account_id)
    return rule


def rule_delete(*, rule: AlertRule, actor: Actor) -> None:
    with transaction.atomic():
        _audit(account=rule.account, actor=actor, action="alert_rule.delete", target=rule.public_id)
        rule.delete()


# --- Firing once per crossing ----------------------------------------------------------------


def _alert_data(alert: Alert, rule: AlertRule | None, values: dict) -> dict:
    """The payload's data: what fired, for which account, and the figures. No secret."""
    return {
        "alert_id": alert.public_id,
        "account": {"id": alert.account.public_id, "name": alert.account.name},
        "rule": {"id": rule.public_id, "kind": rule.kind} if rule else None,
        "title": alert.title,
        "level": alert.level,
        "created_at": _iso(alert.created_at),
        **values,
    }


def _state(rule: AlertRule, subject: str) -> AlertState:
    state = AlertState.objects.filter(rule=rule, subject=subject).first()
    if state is not None:
        return state
    try:
        with transaction.atomic():
            return AlertState.objects.create(rule=rule, subject=subject)
    except IntegrityError:  # another evaluation created it first
        return AlertState.objects.get(rule=rule, subject=subject)


def _fire(rule: AlertRule, condition: Condition, now: datetime) -> Alert | None:
    """The alert, if this evaluation wins the crossing; None if it was fired already."""
    state = _state(rule, condition.subject)
    if not state.armed:
        return None
    with transaction.atomic():
        # The claim: of two evaluations of the same crossing, one matches the armed row.
        claimed = AlertState.objects.filter(pk=state.pk, armed=True).update(
            armed=False, crossings=F("crossings") + 1, updated_at=now
        )
        if not claimed:
            return None
        crossing = AlertState.objects.values_list("crossings", flat=True).get(pk=state.pk)
        alert = Alert.objects.create(
            account=rule.account,
            rule=rule,
            event_type=f"alert.{rule.kind}",
            level=condition.level,
            title=condition.title,
            dedupe_key=f"rule:{rule.pk}:{condition.subject}:{crossing}",
            created_at=now,
        )
        alert.data = _alert_data(alert, rule, condition.data)
        alert.save(update_fields=["data"])
        _deliveries_create(alert, [c for c in rule.channels.all() if c.enabled])
    logger.info("alert %s fired: %s", alert.public_id, condition.subject)
    return alert


def _spend(rule: AlertRule, condition: Condition, now: datetime) -> None:
    """Disarm a lower level crossed together with a higher one, without an alert."""
    AlertState.objects.filter(pk=_state(rule, condition.subject).pk, armed=True).update(
        armed=False, updated_at=now
    )


def _rearm(rule: AlertRule, subject: str, now: datetime) -> None:
    AlertState.objects.filter(rule=rule, subject=subject, armed=False).update(
        armed=True, updated_at=now
    )


def rule_evaluate(rule: AlertRule, figures: Figures) -> list[Alert]:
    fired = []
    fired_groups: set[str] = set()
    for condition in rule_conditions(rule, figures):
        if not condition.crossed:
            if condition.rearm_on_clear:
                _rearm(rule, condition.subject, figures.now)
            continue
        if condition.group and condition.group in fired_groups:
            _spend(rule, condition, figures.now)
            continue
        alert = _fire(rule, condition, figures.now)
        if alert is not None:
            fired.append(alert)
        if condition.group:
            # Either it fired now or it had fired before: lower levels have nothing to add.
            fired_groups.add(condition.group)
    return fired


def account_evaluate(
    *, account_id: int, kinds: list[str] | None = None, now: datetime | None = None
) -> list[Alert]:
    """Evaluate the account's enabled rules (of ``kinds``, or all) against its figures now;
    the alerts that fired. Safe to run any number of times, anywhere, at once."""
    rules = (
        AlertRule.objects.filter(account_id=account_id, enabled=True)
        .select_related("account")
        .prefetch_related("channels")
    )
    if kinds:
        rules = rules.filter(kind__in=kinds)
    figures = Figures(account_id, now or timezone.now())
    fired = []
    for rule in rules:
        fired += rule_evaluate(rule, figures)
    return fired


def balance_rules_rearm(*, account_id: int, available: int) -> int:
    """A credit left ``available`` in the wallet: balance rules whose threshold it is at or
    above may fire again. One UPDATE, in the credit's transaction."""
    return AlertState.objects.filter(
        rule__account_id=account_id,
        rule__kind=RuleKind.BALANCE_BELOW,
        rule__threshold__lte=available,
        armed=False,
    ).update(armed=True, updated_at=timezone.now())


def accounts_to_evaluate(*, since: datetime) -> list[int]:
    """Accounts with enabled rules that were charged since ``since`` (their figures may have
    crossed something), and those with a fired key rule (a rolling cap clears with time)."""
    from django.db.models import Exists, OuterRef

    from billing.models import LedgerEntry, LedgerKind

    charged = LedgerEntry.objects.filter(
        account_id=OuterRef("account_id"), kind=LedgerKind.CHARGE, created_at__gte=since
    )
    fired_keys = AlertState.objects.filter(
        rule__account_id=OuterRef("account_id"), rule__kind=RuleKind.KEY_QUOTA, armed=False
    )
    return list(
        AlertRule.objects.filter(enabled=True)
        .filter(Exists(charged) | Exists(fired_keys))
        .values_list("account_id", flat=True)
        .distinct()
        .order_by("account_id")
    )


# --- Deliveries ------------------------------------------------------------------------------


def _deliveries_create(alert: Alert, channels: list[NotificationChannel]) -> list[AlertDelivery]:
    now = timezone.now()
    deliveries = [
        AlertDelivery.objects.create(
            alert=alert,
            channel=channel,
            channel_kind=channel.kind,
            channel_name=channel.name,
            next_attempt_at=now,
        )
        for channel in channels
    ]
    from alerts.jobs import alert_deliver

    for delivery in deliveries:
        alert_deliver.delay_on_commit(delivery.pk)
    return deliveries


def alert_message(alert: Alert, webhook_id: str) -> Message:
    data = alert.data
    lines = [alert.title + "."]
    for name, value in data.items():
        if name in ("alert_id", "account", "rule", "title", "level", "created_at"):
            continue
        if isinstance(value, dict):
            value = value.get("name") or value.get("id")
        lines.append(f"{name.replace('_', ' ').capitalize()}: {value}")
    lines.append(f"Account: {alert.account.name}")
    lines.append(f"Alerts: {settings.BYTESPIKE_PUBLIC_URL.rstrip('/')}{reverse('alerts:alerts')}")
    return Message(
        webhook_id=webhook_id,
        payload={"type": alert.event_type, "timestamp": _iso(alert.created_at), "data": data},
        subject=alert.title,
        text="\n".join(lines),
    )


def _lease() -> timedelta:
    return timedelta(seconds=settings.BYTESPIKE_CALLBACK_TIMEOUT_SECONDS) + LEASE_MARGIN


def _claim(delivery: AlertDelivery) -> bool:
    """Take the next attempt if it is due; of two workers holding the same message, one sends.
    A claimed attempt holds the delivery for its timeout: if the worker dies, beat resends."""
    now = timezone.now()
    due = delivery.next_attempt_at
    if delivery.status != DeliveryStatus.PENDING or due is None or due > now + EARLY_TOLERANCE:
        return False
    claimed = AlertDelivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts,
        next_attempt_at=due,
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + _lease())  # fmt: skip
    if claimed != 1:
        return False
    delivery.attempts += 1
    return True


def _record(delivery: AlertDelivery, result: SendResult) -> None:
    now = timezone.now()
    fields = {"last_status_code": result.status_code, "last_error": result.error}
    rows = AlertDelivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts
    )
    if result.ok:
        rows.update(
            **fields, status=DeliveryStatus.DELIVERED, next_attempt_at=None,
            delivered_at=Coalesce("delivered_at", now),
        )  # fmt: skip
    else:
        delay = retry_delay(delivery.attempts)
        if delay is None:
            fields.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
        else:
            fields["next_attempt_at"] = now + timedelta(seconds=delay)
        rows.update(**fields)
    delivery.refresh_from_db()


def alert_deliver(delivery_id: int) -> AlertDelivery | None:
    """Make the delivery's next attempt if it is due: the delivery afterwards, or None when
    there was nothing to do (unknown, finished, not due, or another worker took it)."""
    delivery = (
        AlertDelivery.objects.select_related("alert__account", "channel")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or not _claim(delivery):
        return None
    if delivery.channel is None:
        result = SendResult(error="Not sent: the channel was deleted.")
    else:
        message = alert_message(delivery.alert, delivery.webhook_id)
        result = target_send(channel_target(delivery.channel), message)
    _record(delivery, result)
    if not result.ok:
        logger.info(
            "alert delivery %s attempt %d failed: %s",
            delivery.webhook_id,
            delivery.attempts,
            result.error,
        )
    return delivery


def deliveries_due(*, limit: int = 500, grace: timedelta = timedelta(seconds=60)) -> list[int]:
    """Pending deliveries past due by ``grace``: their message was lost, or their wait was
    longer than a broker countdown may be (beat enqueues them)."""
    return list(
        AlertDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now() - grace
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
