"""Inference keys (each bound to one routing group, with optional limits) and management keys.
Only a digest of a key's secret is stored, and a hint to recognise it by."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Account, Project
from catalogue.models import RoutingGroup
from core.ids import new_public_id


class KeyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    # Inference keys only: refused on the data plane until resumed. Revoked is final.
    PAUSED = "paused", "Paused"
    REVOKED = "revoked", "Revoked"


class SecretKey(models.Model):
    """What inference and management keys share: only a digest and a display hint are kept."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=32)
    last4 = models.CharField(max_length=4)
    status = models.CharField(max_length=16, choices=KeyStatus.choices, default=KeyStatus.ACTIVE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{self.prefix}…{self.last4}"

    @property
    def is_active(self) -> bool:
        return self.status == KeyStatus.ACTIVE

    @property
    def is_paused(self) -> bool:
        return self.status == KeyStatus.PAUSED

    @property
    def is_revoked(self) -> bool:
        return self.status == KeyStatus.REVOKED


def new_api_key_id() -> str:
    return new_public_id("key")


# Every limit of an inference key; each is NULL (none) or a positive number.
LIMIT_FIELDS = (
    "quota",
    "rate_limit_5h",
    "rate_limit_1d",
    "rate_limit_7d",
    "rpm",
    "tpm",
    "max_concurrent",
)


def _none_or_positive(*fields: str) -> models.Q:
    condition = models.Q()
    for field in fields:
        condition &= models.Q(**{f"{field}__isnull": True}) | models.Q(**{f"{field}__gt": 0})
    return condition


def model_allowed(allowed_models, slug: str) -> bool:
    """The allowlist rule, for keys and their cached principals: an empty list allows every
    model of the key's group, else only the models listed."""
    return not allowed_models or slug in allowed_models


class ApiKey(SecretKey):
    """An inference key: calls models of exactly one routing group, within its limits.

    Every limit is optional: NULL means none, and a limit is never 0 (a key that must stop is
    paused). Money limits are micro-credits. A deleted key keeps its row (hidden everywhere) so
    usage stays attributed to it.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    public_id = models.CharField(max_length=40, unique=True, default=new_api_key_id, editable=False)
    # The project whose members use the key; moving the key moves its future spend only (usage
    # rows keep the project they were settled in).
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="api_keys")
    group = models.ForeignKey(RoutingGroup, on_delete=models.PROTECT, related_name="api_keys")
    quota = models.BigIntegerField(null=True, blank=True)
    rate_limit_5h = models.BigIntegerField(null=True, blank=True)
    rate_limit_1d = models.BigIntegerField(null=True, blank=True)
    rate_limit_7d = models.BigIntegerField(null=True, blank=True)
    rpm = models.PositiveIntegerField("requests per minute", null=True, blank=True)
    tpm = models.PositiveBigIntegerField("tokens per minute", null=True, blank=True)
    max_concurrent = models.PositiveIntegerField("calls at once", null=True, blank=True)
    # When the limits above last changed: the metering counters keep a key's spend per version
    # of its limits, and a set of limits that comes back must start from a fresh seed.
    limits_set_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    ip_allowlist = models.JSONField(default=list, blank=True)
    ip_denylist = models.JSONField(default=list, blank=True)
    # Slugs of models of the key's group it may call; empty: every model of its group.
    allowed_models = models.JSONField(default=list, blank=True)  # slugs; empty: every model
    created_via_key = models.ForeignKey(
        "ManagementKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    rolled_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at"], name="apikey_account_recent")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=KeyStatus.values), name="apikey_status_valid"
            ),
            models.CheckConstraint(
                condition=_none_or_positive(*LIMIT_FIELDS), name="apikey_limits_positive"
            ),
            # Names tell keys apart in lists, usage rows and exports; a deleted key's name is
            # free again (its row stays only so past usage keeps a name).
            models.UniqueConstraint(
                fields=["account", "name"],
                condition=models.Q(deleted_at__isnull=True),
                name="apikey_name_unique_in_account",
                violation_error_message="A key with this name already exists.",
            ),
        ]

    def may_call(self, slug: str) -> bool:
        return model_allowed(self.allowed_models, slug)

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def display_status(self) -> str:
        if self.is_active and self.is_expired:
            return "expired"
        return self.status


def new_management_key_id() -> str:
    return new_public_id("mkey")


class ManagementKey(SecretKey):
    """A key for the management API (/api/v1); it never calls a model."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="management_keys")
    public_id = models.CharField(
        max_length=40, unique=True, default=new_management_key_id, editable=False
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Management keys are never paused: active or revoked.
            models.CheckConstraint(
                condition=models.Q(status__in=[KeyStatus.ACTIVE, KeyStatus.REVOKED]),
                name="mkey_status_valid",
            )
        ]
