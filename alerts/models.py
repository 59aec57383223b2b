"""Alerts for account owners: where they go (``NotificationChannel``), what fires them
(``AlertRule``), each rule's arming per watched subject (``AlertState``), what fired
(``Alert``) and its sending to each channel (``AlertDelivery``).

"Once per crossing" is held by the database: a rule fires for a subject only by a conditional
UPDATE that disarms its ``AlertState`` (of two evaluators, one wins), and every alert carries a
``dedupe_key`` that is unique (rule, subject and the crossing's number). docs/alerts.md has the
semantics of each rule.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Account
from core.delivery import Delivery, DeliveryStatus
from core.ids import new_public_id
from keys.models import ApiKey


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Signed webhook"
    SLACK = "slack", "Slack"


def new_channel_id() -> str:
    return new_public_id("ach")


class NotificationChannel(models.Model):
    """Where an account's alerts go. ``target`` is one or more email addresses (comma
    separated) or a URL; a webhook channel signs with its own ``whsec_`` secret, stored
    encrypted (the workers sign with it) and shown once, like the account's callback secret."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="alert_channels")
    public_id = models.CharField(max_length=40, unique=True, default=new_channel_id, editable=False)
    kind = models.CharField(max_length=8, choices=ChannelKind.choices)
    name = models.CharField(max_length=100)
    target = models.CharField(max_length=2000)
    secret_ciphertext = models.TextField(blank=True, default="")
    secret_hint = models.CharField(max_length=16, blank=True, default="")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=ChannelKind.values), name="alertchannel_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class RuleKind(models.TextChoices):
    BALANCE_BELOW = "balance_below", "Balance below"
    KEY_QUOTA = "key_quota", "Key quota and caps"
    MONTHLY_SPEND = "monthly_spend", "Monthly spend"
    CALLBACK_FAILURES = "callback_failures", "Failed callbacks"
    BUDGET = "budget", "Budgets at 50, 80 and 100%"


def new_rule_id() -> str:
    return new_public_id("alr")


# Which fields each kind of rule takes (the others stay empty): a constraint keeps it so.
_THRESHOLD_KINDS = (RuleKind.BALANCE_BELOW, RuleKind.MONTHLY_SPEND)


class AlertRule(models.Model):
    """When an account wants to hear: balance below ``threshold``; a key (``api_key``, or
    every key when empty) at 80% and 100% of its quota and of each cap; month's spend at
    ``threshold``; ``streak`` failed callback deliveries in a row. Money is micro-credits."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="alert_rules")
    public_id = models.CharField(max_length=40, unique=True, default=new_rule_id, editable=False)
    kind = models.CharField(max_length=20, choices=RuleKind.choices)
    threshold = models.BigIntegerField(null=True, blank=True)
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    streak = models.PositiveIntegerField(null=True, blank=True)
    channels = models.ManyToManyField(NotificationChannel, related_name="rules", blank=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["account", "kind"], name="alertrule_account_kind")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=RuleKind.values), name="alertrule_kind_valid"
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(kind__in=_THRESHOLD_KINDS, threshold__gt=0)
                    | (~models.Q(kind__in=_THRESHOLD_KINDS) & models.Q(threshold__isnull=True))
                ),
                name="alertrule_threshold_fits_kind",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(kind=RuleKind.CALLBACK_FAILURES, streak__gte=1)
                    | (~models.Q(kind=RuleKind.CALLBACK_FAILURES) & models.Q(streak__isnull=True))
                ),
                name="alertrule_streak_fits_kind",
            ),
            models.CheckConstraint(
                condition=models.Q(kind=RuleKind.KEY_QUOTA) | models.Q(api_key__isnull=True),
                name="alertrule_key_fits_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.public_id})"


class AlertState(models.Model):
    """A rule's arming for one watched subject (a threshold, a key's limit at a level, a
    month...). Armed until the rule fires for it; re-armed when the condition clears."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    subject = models.CharField(max_length=200)
    armed = models.BooleanField(default=True)
    # How many times the rule fired for the subject: numbers each crossing's dedupe key.
    crossings = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "subject"], name="alertstate_unique_subject")
        ]

    def __str__(self) -> str:
        return f"{self.rule_id} {self.subject} {'armed' if self.armed else 'fired'}"


def new_alert_id() -> str:
    return new_public_id("alt")


class Alert(models.Model):
    """One fired alert (or a channel's test alert, which has no rule). ``data`` is the
    payload's data part, as sent: figures, never a secret."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="alerts")
    public_id = models.CharField(max_length=40, unique=True, default=new_alert_id, editable=False)
    rule = models.ForeignKey(
        AlertRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts"
    )
    event_type = models.CharField(max_length=40)  # alert.balance_below, alert.test...
    level = models.CharField(max_length=100, blank=True)  # what was crossed, in words
    title = models.CharField(max_length=200)
    dedupe_key = models.CharField(max_length=300, unique=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at"], name="alert_account_recent")]

    def __str__(self) -> str:
        return self.title


def new_message_id() -> str:
    return new_public_id("msg")


class AlertDelivery(Delivery):
    """An alert sent to one channel: retried with backoff until delivered or given up. The
    channel's kind and name are kept, so the history reads the same after it is deleted."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(
        NotificationChannel,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    channel_kind = models.CharField(max_length=8, choices=ChannelKind.choices)
    channel_name = models.CharField(max_length=100)
    webhook_id = models.CharField(max_length=40, unique=True, default=new_message_id)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="alertdelivery_due",
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=DeliveryStatus.values),
                name="alertdelivery_status_valid",
            ),
            models.UniqueConstraint(
                fields=["alert", "channel"], name="alertdelivery_once_per_channel"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id} {self.status}"


class OperatorCondition(models.Model):
    """Something the gateway's operators are told about (alerts/operators.py), by its key: a
    breaker trip (one per trip), a channel failing, the task queue or a process's settlement
    lag over its threshold, a wallet whose books are wrong. ``active`` flips once per crossing:
    the flip that sets it sends the alert, the one that clears it says it is resolved."""

    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=40)
    active = models.BooleanField(default=False)
    summary = models.CharField(max_length=500, blank=True)
    crossings = models.PositiveIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.key} ({'active' if self.active else 'clear'})"
