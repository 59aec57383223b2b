"""Wallets, the append-only ledger, holds, usage records and their rollups, redemption codes.

All money is integer micro-credits (core/money.py). Invariants, kept by the modules that
write the books (billing/services.py, holds.py, batches.py, usage.py, redemption.py) and checked
by the tests: a wallet's balance is the sum of its ledger amounts, its held amount is the sum of
its open holds (and of the ledger's held changes), available = balance - held >= 0, and the
credits of usage records equal the charges in the ledger.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Account, Project
from catalogue.models import RoutingGroup
from core.ids import new_public_id
from keys.models import ApiKey


class Wallet(models.Model):
    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="wallet")
    balance = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    # Synchronous requests in flight, against concurrency_limit (tasks are not counted).
    in_flight = models.IntegerField(default=0)
    concurrency_limit = models.PositiveIntegerField(default=25)
    low_balance_threshold = models.BigIntegerField(default=0)
    # Set when available fell below the threshold and the alert went out; cleared on top-up.
    low_balance_alerted = models.BooleanField(default=False)
    # Owners opted in to last month's statement by e-mail on the 1st; the month last sent.
    statement_emails = models.BooleanField(default=False)
    statement_sent_for = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(held__gte=0), name="wallet_held_gte_0"),
            models.CheckConstraint(
                condition=models.Q(balance__gte=models.F("held")), name="wallet_available_gte_0"
            ),
            models.CheckConstraint(
                condition=models.Q(in_flight__gte=0), name="wallet_in_flight_gte_0"
            ),
            models.CheckConstraint(
                condition=models.Q(low_balance_threshold__gte=0), name="wallet_threshold_gte_0"
            ),
        ]

    def __str__(self) -> str:
        return f"Wallet of {self.account}"

    @property
    def available(self) -> int:
        return self.balance - self.held

    @property
    def is_low(self) -> bool:
        return self.low_balance_threshold > 0 and self.available < self.low_balance_threshold


class LedgerKind(models.TextChoices):
    TOPUP = "topup", "Top-up"
    REDEEM = "redeem", "Redeemed code"
    ADMIN_CREDIT = "admin_credit", "Credit by ByteSpike"
    ADMIN_DEBIT = "admin_debit", "Debit by ByteSpike"
    HOLD = "hold", "Hold"
    RELEASE = "release", "Release"
    CHARGE = "charge", "Charge"
    REFUND = "refund", "Refund"


class LedgerEntry(models.Model):
    """One change to a wallet. ``amount`` changes the balance, ``held_change`` the held amount
    (a hold moves nothing out of the balance; it reserves part of it)."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=16, choices=LedgerKind.choices)
    amount = models.BigIntegerField(default=0)
    held_change = models.BigIntegerField(default=0)
    balance_after = models.BigIntegerField()
    held_after = models.BigIntegerField()
    reference = models.CharField(max_length=100, blank=True)
    idempotency_key = models.CharField(max_length=150, unique=True)
    description = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "ledger entries"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="ledger_account_recent"),
            models.Index(fields=["account", "kind", "-created_at"], name="ledger_account_kind"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=LedgerKind.values), name="ledger_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} ({self.reference})"


class HoldStatus(models.TextChoices):
    OPEN = "open", "Open"
    SETTLED = "settled", "Settled"
    RELEASED = "released", "Released"


class HoldKind(models.TextChoices):
    REQUEST = "request", "Request"  # one call, held by the web process serving it
    TASK = "task", "Task"  # one async task, held until its terminal state
    LEASE = "lease", "Credit lease"  # a web process's credit for a busy account's calls


class Hold(models.Model):
    """Credits reserved for a request, a task or a web process's lease until it settles
    (charged) or is released. A lease is charged in batches and shrinks by what it charged."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="holds")
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="holds"
    )
    reference = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=8, choices=HoldKind.choices, default=HoldKind.REQUEST)
    amount = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=HoldStatus.choices, default=HoldStatus.OPEN)
    # Counted in the wallet's in_flight (calls admitted by the database, when Redis is down).
    counts_in_flight = models.BooleanField(default=True)
    charged = models.BigIntegerField(default=0)
    # What a settle could not charge because the wallet ran short.
    shortfall = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    # A request's hold is renewed by its web process while the request runs (every few seconds);
    # one that stops being renewed belongs to a process that died, and is released.
    renewed_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "created_at"], name="hold_status_age"),
            models.Index(
                fields=["renewed_at"],
                condition=models.Q(status="open") & ~models.Q(kind="task"),
                name="hold_open_renewed",
            ),
            models.Index(
                fields=["api_key"], condition=models.Q(status="open"), name="hold_open_by_key"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="hold_amount_gte_0"),
            models.CheckConstraint(
                condition=models.Q(status__in=HoldStatus.values), name="hold_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=HoldKind.values), name="hold_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.status} {self.amount}"


class UsageRecord(models.Model):
    """One billed call. Failed calls are free and have none."""

    request_id = models.CharField(max_length=100, unique=True)
    # The settlement batch whose one ledger entry charged it (calls admitted against a lease);
    # empty when its own hold's settlement did (the ledger entry's reference is the request id).
    batch = models.CharField(max_length=40, blank=True, default="")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="usage")
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.PROTECT, null=True, blank=True, related_name="usage"
    )
    # The project the key was in when the call was settled: moving a key later leaves it here.
    project = models.ForeignKey(
        Project, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    group = models.ForeignKey(
        RoutingGroup, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    model = models.ForeignKey("catalogue.AIModel", on_delete=models.PROTECT, related_name="+")
    # The deployment that served the call (the one attempt that succeeded).
    deployment = models.ForeignKey(
        "catalogue.Deployment", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    family = models.CharField(max_length=8)
    protocol = models.CharField(max_length=16)
    stream = models.BooleanField(default=False)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    images = models.IntegerField(default=0)
    seconds = models.IntegerField(default=0)
    credits = models.BigIntegerField(default=0)
    shortfall = models.BigIntegerField(default=0)
    latency_ms = models.IntegerField(null=True, blank=True)
    ttft_ms = models.IntegerField(null=True, blank=True)
    # The caller's tags (billing/tags.py), sorted ``key=value`` joined by commas.
    tags = models.CharField(max_length=1400, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="usage_account_recent"),
            models.Index(fields=["api_key", "-created_at"], name="usage_key_recent"),
            models.Index(fields=["batch"], condition=~models.Q(batch=""), name="usage_batch"),
        ]

    def __str__(self) -> str:
        return self.request_id


class _Rollup(models.Model):
    """What a rollup row sums, and the dimensions every rollup has (billing/usage.py adds a
    settlement batch's calls to them in one upsert per row)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, null=True, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, related_name="+")
    model = models.ForeignKey("catalogue.AIModel", on_delete=models.CASCADE, related_name="+")
    family = models.CharField(max_length=8)
    hour = models.DateTimeField()
    calls = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    images = models.BigIntegerField(default=0)
    seconds = models.BigIntegerField(default=0)
    credits = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class UsageRollup(_Rollup):
    """Usage summed per account, key, project, model and hour: what reports read."""

    class Meta:
        constraints = [
            # A key moved between projects within the hour has a row in each.
            models.UniqueConstraint(
                fields=["account", "api_key", "project", "model", "hour"],
                name="rollup_unique_bucket",
            )
        ]
        indexes = [
            models.Index(fields=["account", "hour"], name="rollup_account_hour"),
            models.Index(fields=["project", "hour"], name="rollup_project_hour"),
            models.Index(fields=["api_key", "hour"], name="rollup_key_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h key {self.api_key_id} {self.model_id}"


class UsageTagRollup(_Rollup):
    """Usage summed per account, key, project, model, tag and hour: reports filtered or grouped
    by tag read it. A call with three tags adds to three rows, so tag groups may sum to more than
    the total."""

    tag = models.CharField(max_length=129)  # key=value

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "api_key", "project", "model", "tag", "hour"],
                name="tag_rollup_unique_bucket",
            )
        ]
        indexes = [models.Index(fields=["account", "tag", "hour"], name="tag_rollup_account_tag")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.tag} key {self.api_key_id} {self.model_id}"


class KeySpend(models.Model):
    """A key's spend per five minutes, for its rolling 5h/1d/7d caps (kept for 8 days)."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    bucket = models.DateTimeField()
    credits = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "bucket"], name="keyspend_unique_bucket")
        ]

    def __str__(self) -> str:
        return f"key {self.api_key_id} at {self.bucket:%Y-%m-%d %H:%M}"


class KeyTotal(models.Model):
    """A key's lifetime spend, against its quota."""

    api_key = models.OneToOneField(
        ApiKey, on_delete=models.CASCADE, primary_key=True, related_name="total"
    )
    credits = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"key {self.api_key_id}: {self.credits}"


class RedemptionBatch(models.Model):
    name = models.CharField(max_length=100)
    amount = models.BigIntegerField()
    count = models.PositiveIntegerField()
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "redemption batches"
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="batch_amount_gt_0")
        ]

    def __str__(self) -> str:
        return self.name


class RedemptionCode(models.Model):
    """A one-time code worth its batch's amount. Only a digest of the code is stored."""

    batch = models.ForeignKey(RedemptionBatch, on_delete=models.CASCADE, related_name="codes")
    digest = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=8)
    redeemed_at = models.DateTimeField(null=True, blank=True)
    redeemed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    account = models.ForeignKey(
        Account, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    def __str__(self) -> str:
        return f"…{self.hint}"


class BudgetScope(models.TextChoices):
    ACCOUNT = "account", "Account"
    MEMBER = "member", "Member"


class Budget(models.Model):
    """A spending limit on an account, or on one member's keys (the keys they created): monthly
    (a calendar month of the account's time zone) and/or lifetime, in micro-credits. A hard
    budget refuses calls past it (402 ``budget_exceeded``, through the metering engine, atomically
    with the key's limits); a soft one only alerts. Alerts go out at 50, 80 and 100%."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="budgets")
    scope = models.CharField(max_length=16, choices=BudgetScope.choices)
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    monthly = models.BigIntegerField(null=True, blank=True)
    lifetime = models.BigIntegerField(null=True, blank=True)
    hard = models.BooleanField(default=True)
    # The highest threshold (50, 80, 100) alerted in ``alerted_period`` (YYYY-MM, or "life").
    alerted_period = models.CharField(max_length=8, blank=True, default="")
    alerted_percent = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=models.Q(scope="account"),
                name="budget_one_per_account",
            ),
            models.UniqueConstraint(
                fields=["account", "member"], condition=models.Q(scope="member"),
                name="budget_one_per_member",
            ),
            models.CheckConstraint(
                condition=models.Q(scope="account", member__isnull=True)
                | models.Q(scope="member", member__isnull=False),
                name="budget_scope_names_its_target",
            ),
            models.CheckConstraint(
                condition=(models.Q(monthly__isnull=True) | models.Q(monthly__gt=0))
                & (models.Q(lifetime__isnull=True) | models.Q(lifetime__gt=0)),
                name="budget_amounts_positive",
            ),
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.scope} budget of {self.account}"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"


def new_payment_id() -> str:
    return new_public_id("pay")


class Payment(models.Model):
    """A top-up bought through a payment provider (billing/payments/). The row is written before
    the provider is called; its webhook turns it paid (and credits the wallet) exactly once."""

    public_id = models.CharField(max_length=40, unique=True, default=new_payment_id)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="payments")
    provider = models.CharField(max_length=16)
    # The provider's id for it (a Stripe Checkout Session id, a sandbox id): set when the
    # checkout is created, and the ledger entry's reference.
    provider_payment_id = models.CharField(max_length=255, blank=True, default="")
    amount = models.BigIntegerField()
    status = models.CharField(
        max_length=8, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    failure = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="payment_account_recent"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_payment_id"],
                condition=~models.Q(provider_payment_id=""),
                name="payment_provider_id_unique",
            ),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_amount_gt_0"),
            models.CheckConstraint(
                condition=models.Q(status__in=PaymentStatus.values), name="payment_status_valid"
            ),
            models.CheckConstraint(
                condition=~models.Q(status="paid") | models.Q(paid_at__isnull=False),
                name="payment_paid_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.status} {self.amount}"

    @property
    def is_terminal(self) -> bool:
        return self.status != PaymentStatus.PENDING
