"""Users, the accounts they belong to, their roles, invitations and the audit trail."""

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from catalogue.models import RoutingGroup
from core.ids import new_public_id


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra_fields)


class User(AbstractUser):
    """A person who signs in with an email address. Staff users run the platform (admin)."""

    username = None
    first_name = None
    last_name = None
    email = models.EmailField("email address", unique=True)
    name = models.CharField(max_length=150, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email

    @property
    def display_name(self) -> str:
        return self.name or self.email


def new_account_id() -> str:
    return new_public_id("acct")


class Account(models.Model):
    """The billing owner: owns the wallet, keys, tasks and usage. A team works inside it."""

    public_id = models.CharField(max_length=40, unique=True, default=new_account_id, editable=False)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)
    # The Standard Webhooks signing secret (whsec_...) for task callbacks: encrypted, since it
    # must be used to sign; shown once when created or rotated.
    webhook_secret_ciphertext = models.TextField(blank=True, editable=False)
    webhook_secret_hint = models.CharField(max_length=16, blank=True, editable=False)
    webhook_secret_rotated_at = models.DateTimeField(null=True, blank=True)
    # The secret a rotation replaced, encrypted the same way: callbacks are signed with both
    # until ``webhook_previous_secret_expires_at`` (the overlap window), then it is erased.
    webhook_previous_secret_ciphertext = models.TextField(blank=True, editable=False)
    webhook_previous_secret_hint = models.CharField(max_length=16, blank=True, editable=False)
    webhook_previous_secret_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            # A previous secret always has the end of its window, and only it does.
            models.CheckConstraint(
                condition=(
                    models.Q(
                        webhook_previous_secret_ciphertext="",
                        webhook_previous_secret_expires_at__isnull=True,
                    )
                    | (
                        ~models.Q(webhook_previous_secret_ciphertext="")
                        & models.Q(webhook_previous_secret_expires_at__isnull=False)
                    )
                ),
                name="account_previous_webhook_secret_has_expiry",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    VIEWER = "viewer", "Viewer"


def new_membership_id() -> str:
    return new_public_id("mem")


class Membership(models.Model):
    public_id = models.CharField(
        max_length=40, unique=True, default=new_membership_id, editable=False
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "user"], name="membership_unique_user"),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.account} as {self.role}"

    def can(self, permission: str) -> bool:
        from accounts.permissions import role_can

        return role_can(self.role, permission)


def new_invitation_id() -> str:
    return new_public_id("inv")


class Invitation(models.Model):
    """An emailed invitation to join an account with a role, accepted once through its link.

    The link's token is stored as a SHA-256 digest (to find the invitation) and encrypted (so a
    worker can email it; cleared once the invitation closes). Resending issues a new token.
    """

    public_id = models.CharField(
        max_length=40, unique=True, default=new_invitation_id, editable=False
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    token_digest = models.CharField(max_length=64, unique=True)
    token_ciphertext = models.TextField(blank=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="invitation_role_valid"
            ),
            # At most one open invitation per address and account; resending reuses it.
            models.UniqueConstraint(
                Lower("email"),
                "account",
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_open_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.account}"

    @property
    def is_open(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "sent" if self.sent_at else "sending"


class AuditEvent(models.Model):
    """Who did what to an account's team, keys and settings, and when. Append-only."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=254, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at"], name="audit_account_recent")]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"


class GroupGrant(models.Model):
    """An exclusive group made available to one account."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="group_grants")
    group = models.ForeignKey(RoutingGroup, on_delete=models.CASCADE, related_name="grants")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "group"], name="group_grant_unique")
        ]

    def __str__(self) -> str:
        return f"{self.group} for {self.account}"


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


class ApiKey(SecretKey):
    """An inference key: calls models of exactly one routing group, within its limits.

    Every limit is optional: NULL means none, and a limit is never 0 (a key that must stop is
    paused). Money limits are micro-credits. A deleted key keeps its row (hidden everywhere) so
    usage stays attributed to it.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    public_id = models.CharField(max_length=40, unique=True, default=new_api_key_id, editable=False)
    group = models.ForeignKey(RoutingGroup, on_delete=models.PROTECT, related_name="api_keys")
    quota = models.BigIntegerField(null=True, blank=True)
    rate_limit_5h = models.BigIntegerField(null=True, blank=True)
    rate_limit_1d = models.BigIntegerField(null=True, blank=True)
    rate_limit_7d = models.BigIntegerField(null=True, blank=True)
    rpm = models.PositiveIntegerField("requests per minute", null=True, blank=True)
    tpm = models.PositiveBigIntegerField("tokens per minute", null=True, blank=True)
    max_concurrent = models.PositiveIntegerField("calls at once", null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    ip_allowlist = models.JSONField(default=list, blank=True)
    ip_denylist = models.JSONField(default=list, blank=True)
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
        ]

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
