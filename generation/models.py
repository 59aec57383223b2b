"""The model catalogue: upstream channels and the models routed through them."""

from django.db import models
from django.utils import timezone

from accounts.models import RoutingGroup
from core import crypto


class ChannelKind(models.TextChoices):
    OPENAI = "openai", "OpenAI (Chat Completions, Responses, Images, Videos)"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (DeepSeek, vLLM, Ollama, ...)"
    ANTHROPIC = "anthropic", "Anthropic Messages"
    GEMINI = "gemini", "Google Gemini"


class ChannelMode(models.TextChoices):
    SANDBOX = "sandbox", "Sandbox (built in, offline)"
    LIVE = "live", "Live upstream"


class Channel(models.Model):
    """An upstream provider: its wire format (kind), address and encrypted secret.

    In sandbox mode the built-in sandbox answers in the channel's wire format, so the whole
    product works offline; giving the channel a base URL and a secret and switching it to live
    mode sends the same requests to the real provider.
    """

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=32, choices=ChannelKind.choices)
    mode = models.CharField(max_length=16, choices=ChannelMode.choices, default=ChannelMode.SANDBOX)
    base_url = models.URLField(blank=True)
    secret_ciphertext = models.TextField(blank=True, editable=False)
    secret_hint = models.CharField(max_length=16, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=ChannelKind.values), name="channel_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(mode__in=ChannelMode.values), name="channel_mode_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def set_secret(self, secret: str) -> None:
        self.secret_ciphertext = crypto.encrypt(secret) if secret else ""
        self.secret_hint = crypto.mask(secret)

    def get_secret(self) -> str:
        return crypto.decrypt(self.secret_ciphertext) if self.secret_ciphertext else ""

    @property
    def is_sandbox(self) -> bool:
        return self.mode == ChannelMode.SANDBOX


class Family(models.TextChoices):
    TEXT = "text", "Text"
    IMAGE = "image", "Image"
    VIDEO = "video", "Video"


class RefundPolicy(models.TextChoices):
    FULL = "full", "Full refund"
    PRORATED = "prorated", "Prorated by progress"
    NONE = "none", "No refund"


class AIModel(models.Model):
    """A model callers name in requests, routed to a channel's upstream model.

    Prices are micro-credits before the group multiplier: text per million tokens of each kind,
    images per image (``image_prices`` by "<size>/<quality>" tier, "default" as fallback), video
    per second of output plus a submit fee.
    """

    slug = models.CharField(max_length=100, unique=True)
    display_name = models.CharField(max_length=100)
    family = models.CharField(max_length=8, choices=Family.choices)
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="models")
    upstream_model = models.CharField(max_length=100)
    groups = models.ManyToManyField(RoutingGroup, related_name="models", blank=True)
    is_active = models.BooleanField(default=True)
    description = models.CharField(max_length=300, blank=True)
    capabilities = models.JSONField(default=list, blank=True)

    input_price = models.BigIntegerField(default=0, help_text="per 1M input tokens")
    output_price = models.BigIntegerField(default=0, help_text="per 1M output tokens")
    cache_read_price = models.BigIntegerField(default=0, help_text="per 1M cache-read tokens")
    cache_write_price = models.BigIntegerField(default=0, help_text="per 1M cache-write tokens")
    image_prices = models.JSONField(default=dict, blank=True)
    video_price_per_second = models.BigIntegerField(default=0)
    video_submit_fee = models.BigIntegerField(default=0)

    context_window = models.PositiveIntegerField(default=0)
    max_output_tokens = models.PositiveIntegerField(default=0)
    max_images = models.PositiveSmallIntegerField(default=4)
    sizes = models.JSONField(default=list, blank=True)
    durations = models.JSONField(default=list, blank=True)
    aspect_ratios = models.JSONField(default=list, blank=True)
    estimated_seconds = models.PositiveIntegerField(default=0)
    max_run_seconds = models.PositiveIntegerField(default=600)
    cancel_refund_policy = models.CharField(
        max_length=16, choices=RefundPolicy.choices, default=RefundPolicy.PRORATED
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "model"
        ordering = ["family", "slug"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(family__in=Family.values), name="model_family_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    input_price__gte=0,
                    output_price__gte=0,
                    cache_read_price__gte=0,
                    cache_write_price__gte=0,
                    video_price_per_second__gte=0,
                    video_submit_fee__gte=0,
                ),
                name="model_prices_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.slug


# --- Async tasks -------------------------------------------------------------------------------


def new_task_id() -> str:
    from core.ids import new_public_id

    return new_public_id("task")


class TaskStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class Task(models.Model):
    """An async image or video generation: pending -> running -> completed | failed | cancelled.

    Every transition is a conditional UPDATE on ``status`` (compare-and-set), so a duplicate
    worker, poller or reaper can never settle or refund twice. ``version`` grows with every
    visible change; the SSE stream uses it as the event id.
    """

    public_id = models.CharField(max_length=40, unique=True, default=new_task_id, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="tasks")
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    model = models.ForeignKey(AIModel, on_delete=models.PROTECT, related_name="tasks")
    out_task_id = models.CharField(max_length=128, blank=True)
    request_digest = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    # The group multiplier when it was submitted: the final charge is priced the same way.
    rate_multiplier = models.DecimalField(max_digits=6, decimal_places=3, default=1)
    estimated_credits = models.BigIntegerField(default=0)
    estimated_seconds = models.PositiveIntegerField(default=0)
    credits_used = models.BigIntegerField(null=True, blank=True)
    output = models.JSONField(default=list, blank=True)
    error = models.JSONField(null=True, blank=True)
    upstream_id = models.CharField(max_length=500, blank=True)
    callback_url = models.URLField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # When a worker last looked at it; the reaper revives tasks nobody looks at any more.
    heartbeat_at = models.DateTimeField(default=timezone.now)
    # The current chain of worker messages: a message carrying another lease is stale and
    # stops, so a revived task never ends up with two pollers.
    lease = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="task_account_recent"),
            models.Index(fields=["status", "heartbeat_at"], name="task_status_heartbeat"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "out_task_id"],
                condition=~models.Q(out_task_id=""),
                name="task_unique_out_task_id",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=TaskStatus.values), name="task_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="task_progress_lte_100"
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def new_artifact_key() -> str:
    import secrets

    return secrets.token_urlsafe(18)


class Artifact(models.Model):
    """A generated image or video, copied into our storage and served from signed URLs.

    ``key`` is random and is all a URL carries: nothing about the task or the account."""

    key = models.CharField(max_length=40, unique=True, default=new_artifact_key, editable=False)
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.CASCADE, related_name="artifacts"
    )
    task = models.ForeignKey(
        Task, on_delete=models.CASCADE, null=True, blank=True, related_name="artifacts"
    )
    kind = models.CharField(max_length=8, choices=[("image", "Image"), ("video", "Video")])
    file = models.FileField(upload_to="artifacts/%Y/%m/%d/")
    mime_type = models.CharField(max_length=50)
    size_bytes = models.BigIntegerField(default=0)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    duration_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.key


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class CallbackDelivery(models.Model):
    """A task's terminal event for its callback URL. The payload and ``webhook_id`` are fixed
    when it is created, so every attempt (and a manual redelivery) sends the same message."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="deliveries")
    webhook_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=32)
    url = models.URLField(max_length=2000)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return self.webhook_id


class CallbackAttempt(models.Model):
    delivery = models.ForeignKey(
        CallbackDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.CharField(max_length=500, blank=True)
    manual = models.BooleanField(default=False)

    class Meta:
        ordering = ["-attempted_at", "-id"]

    def __str__(self) -> str:
        return f"{self.delivery} at {self.attempted_at:%Y-%m-%d %H:%M:%S}"
