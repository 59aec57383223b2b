"""The catalogue: routing groups, the upstream channels, and the models callers name, with
their list prices (price cards) and limits. Staff edit it in the admin; every other app reads it.
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
