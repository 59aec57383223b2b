"""The catalogue: routing groups, the upstream channels, the models callers name (with their
list prices and limits), the deployments that serve each model on a channel, and the aliases a
group gives its models. Staff edit it in the admin; every other app reads it.
"""

from django.db import models
from django.utils import timezone

from core import crypto


class RoutingGroup(models.Model):
    """A staff-defined set of models a key can reach, with a price multiplier.

    Public groups are available to every account; exclusive ones only to accounts granted them.
    """

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    rate_multiplier = models.DecimalField(max_digits=6, decimal_places=3, default=1)
    exclusive = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rate_multiplier__gt=0), name="group_multiplier_positive"
            )
        ]

    def __str__(self) -> str:
        return self.slug


class ChannelKind(models.TextChoices):
    OPENAI = "openai", "OpenAI (Chat Completions, Responses, Images, Videos)"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (DeepSeek, vLLM, Ollama, ...)"
    ANTHROPIC = "anthropic", "Anthropic Messages"
    GEMINI = "gemini", "Google Gemini"


# Wire formats a live channel can generate images and videos in (the sandbox draws for any).
MEDIA_KINDS = (ChannelKind.OPENAI, ChannelKind.OPENAI_COMPATIBLE)


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
    is_enabled = models.BooleanField(
        default=True, help_text="A disabled channel gets no calls: its deployments are skipped."
    )
    # Faults the built-in sandbox plays on this channel, so failover can be shown offline.
    sandbox_failure_rate = models.DecimalField(
        max_digits=4, decimal_places=3, default=0,
        help_text="Sandbox only: share of calls answered 503 (0 to 1).",
    )  # fmt: skip
    sandbox_timeout_rate = models.DecimalField(
        max_digits=4, decimal_places=3, default=0,
        help_text="Sandbox only: share of calls that time out (0 to 1).",
    )  # fmt: skip
    sandbox_latency_ms = models.PositiveIntegerField(
        default=0, help_text="Sandbox only: milliseconds added before every answer."
    )
    sandbox_outage_start = models.DateTimeField(
        null=True, blank=True, help_text="Sandbox only: from then until the end, every call fails."
    )
    sandbox_outage_end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    sandbox_failure_rate__gte=0,
                    sandbox_failure_rate__lte=1,
                    sandbox_timeout_rate__gte=0,
                    sandbox_timeout_rate__lte=1,
                ),
                name="channel_sandbox_rates_valid",
            ),
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

    def serves(self, family: str) -> bool:
        """Whether this channel can serve a model of ``family``: any channel serves text; images
        and videos need an OpenAI-style channel, or the sandbox."""
        return family == Family.TEXT or self.is_sandbox or self.kind in MEDIA_KINDS


class Family(models.TextChoices):
    TEXT = "text", "Text"
    IMAGE = "image", "Image"
    VIDEO = "video", "Video"


class RefundPolicy(models.TextChoices):
    FULL = "full", "Full refund"
    PRORATED = "prorated", "Prorated by progress"
    NONE = "none", "No refund"


class AIModel(models.Model):
    """A model callers name in requests, served by its deployments (a channel's upstream model).

    Prices are micro-credits before the group multiplier: text per million tokens of each kind,
    images per image (``image_prices`` by "<size>/<quality>" tier, "default" as fallback), video
    per second of output plus a submit fee.
    """

    slug = models.CharField(max_length=100, unique=True)
    display_name = models.CharField(max_length=100)
    family = models.CharField(max_length=8, choices=Family.choices)
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
    max_attempts = models.PositiveSmallIntegerField(
        default=3,
        help_text="Retry budget: deployments one call may try before it fails (1 = no failover).",
    )
    failover_deadline_seconds = models.PositiveIntegerField(
        default=30, help_text="No further deployment is tried once a call is this old."
    )
    attempt_timeout_seconds = models.PositiveIntegerField(
        default=0,
        help_text="Give up on a deployment (and fail over) when it has not answered in this "
        "long: a streamed call's first event, a whole answer otherwise. 0: only the upstream "
        "client's own timeouts (connect 10 s, read 300 s).",
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
            models.CheckConstraint(
                condition=models.Q(max_attempts__gte=1), name="model_max_attempts_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class Deployment(models.Model):
    """One way to serve a model: a channel and the model's name there.

    Calls go to the highest priority tier that has a healthy deployment, spread by weight inside
    the tier; a failed attempt moves on to the next deployment (generation/routing.py).
    """

    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="deployments")
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="deployments")
    upstream_model = models.CharField(
        max_length=100,
        help_text="The model's name on this channel (a dated id, an Azure deployment).",
    )
    priority = models.SmallIntegerField(default=0, help_text="Higher tiers are tried first.")
    weight = models.PositiveIntegerField(
        default=1, help_text="Share of its tier's calls; 0 serves only when the rest have failed."
    )
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model", "-priority", "-weight", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "channel", "upstream_model"], name="deployment_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model.slug} on {self.channel.slug} ({self.upstream_model})"


class ModelAlias(models.Model):
    """Another name for a model within one group: ``target`` is a model's slug, or another alias
    of the same group (followed, at most MAX_ALIAS_HOPS times; cycles are refused on save)."""

    MAX_ALIAS_HOPS = 5

    group = models.ForeignKey(RoutingGroup, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=100)
    target = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "model aliases"
        ordering = ["group", "alias"]
        constraints = [
            models.UniqueConstraint(fields=["group", "alias"], name="alias_unique_in_group")
        ]

    def __str__(self) -> str:
        return f"{self.alias} -> {self.target}"
