"""The catalogue `seed_demo` installs: five channels, three public groups, one exclusive group,
and GPT-4.1 served by two deployments (OpenAI first, an Azure-style backup when it fails).

Channels start in sandbox mode. ``BYTESPIKE_<PROVIDER>_BASE_URL`` / ``_API_KEY`` (OPENAI,
ANTHROPIC, GEMINI, DEEPSEEK) switch that provider's channel to its real upstream.
"""

import math
import os
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from catalogue.models import (
    AIModel,
    Channel,
    ChannelKind,
    ChannelMode,
    Deployment,
    Family,
    RefundPolicy,
    RoutingGroup,
)

M = 1_000_000  # micro-credits per credit

CHANNELS = [
    ("openai", "OpenAI", ChannelKind.OPENAI, "https://api.openai.com/v1"),
    ("anthropic", "Anthropic", ChannelKind.ANTHROPIC, "https://api.anthropic.com"),
    ("gemini", "Google Gemini", ChannelKind.GEMINI, "https://generativelanguage.googleapis.com"),
    ("deepseek", "DeepSeek", ChannelKind.OPENAI_COMPATIBLE, "https://api.deepseek.com/v1"),
    # An Azure-style OpenAI-compatible endpoint: GPT-4.1's second deployment, its failover.
    ("azure", "Azure OpenAI (backup)", ChannelKind.OPENAI_COMPATIBLE,
     "https://bytespike-demo.openai.azure.com/openai/v1"),
]  # fmt: skip

# More deployments than a model's first: (model, channel, upstream model name, priority, weight).
# The first deployment of each model (MODELS below) has priority 1 and weight 1.
EXTRA_DEPLOYMENTS = [("gpt-4.1", "azure", "gpt-41-prod", 0, 1)]

GROUPS = [
    (
        "claude-default",
        "Claude",
        "Anthropic's Claude models, with DeepSeek and Gemini reachable over the Anthropic "
        "protocol through translation.",
        "1.000",
        False,
    ),
    (
        "gemini-default",
        "Gemini",
        "Google's Gemini text models plus image and video generation.",
        "1.000",
        False,
    ),
    ("default", "OpenAI", "OpenAI text and image models.", "1.000", False),
    (
        "enterprise",
        "Enterprise",
        "Frontier models at negotiated rates, for accounts granted access.",
        "0.850",
        True,
    ),
]

TEXT = {"capabilities": ["chat", "streaming", "tools", "vision"]}
MODELS = [
    # slug, name, family, channel, upstream, groups, fields
    ("claude-sonnet-4-5", "Claude Sonnet 4.5", Family.TEXT, "anthropic", "claude-sonnet-4-5",
     ["claude-default"], {**TEXT, "input_price": 3 * M, "output_price": 15 * M,
      "cache_read_price": 300_000, "cache_write_price": 3_750_000,
      "context_window": 200_000, "max_output_tokens": 64_000}),
    ("claude-haiku-4-5", "Claude Haiku 4.5", Family.TEXT, "anthropic", "claude-haiku-4-5",
     ["claude-default"], {**TEXT, "input_price": 1 * M, "output_price": 5 * M,
      "cache_read_price": 100_000, "cache_write_price": 1_250_000,
      "context_window": 200_000, "max_output_tokens": 64_000}),
    ("claude-opus-4-1", "Claude Opus 4.1", Family.TEXT, "anthropic", "claude-opus-4-1",
     ["enterprise"], {**TEXT, "input_price": 15 * M, "output_price": 75 * M,
      "cache_read_price": 1_500_000, "cache_write_price": 18_750_000,
      "context_window": 200_000, "max_output_tokens": 32_000}),
    ("deepseek-chat", "DeepSeek V3.2", Family.TEXT, "deepseek", "deepseek-chat",
     ["claude-default"], {"capabilities": ["chat", "streaming", "tools"],
      "input_price": 280_000, "output_price": 420_000, "cache_read_price": 28_000,
      "context_window": 128_000, "max_output_tokens": 8_000}),
    ("gemini-2.5-flash", "Gemini 2.5 Flash", Family.TEXT, "gemini", "gemini-2.5-flash",
     ["claude-default", "gemini-default"], {**TEXT, "input_price": 300_000,
      "output_price": 2_500_000, "cache_read_price": 75_000,
      "context_window": 1_048_576, "max_output_tokens": 65_536}),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", Family.TEXT, "gemini", "gemini-2.5-pro",
     ["gemini-default"], {**TEXT, "input_price": 1_250_000, "output_price": 10 * M,
      "cache_read_price": 310_000, "context_window": 1_048_576, "max_output_tokens": 65_536}),
    ("imagen-4", "Imagen 4", Family.IMAGE, "gemini", "imagen-4.0-generate-001",
     ["gemini-default"], {"capabilities": ["image-generation"], "max_images": 4,
      "image_prices": {"default": 40_000}, "sizes": ["1024x1024", "1536x1024", "1024x1536"],
      "aspect_ratios": ["1:1", "3:2", "2:3"], "estimated_seconds": 8,
      "cancel_refund_policy": RefundPolicy.FULL}),
    ("veo-3-fast", "Veo 3 Fast", Family.VIDEO, "gemini", "veo-3.0-fast-generate-001",
     ["gemini-default"], {"capabilities": ["video-generation"],
      "video_price_per_second": 150_000, "video_submit_fee": 0, "durations": [4, 6, 8],
      "aspect_ratios": ["16:9", "9:16"], "estimated_seconds": 60, "max_run_seconds": 600,
      "cancel_refund_policy": RefundPolicy.PRORATED}),
    ("gpt-4.1", "GPT-4.1", Family.TEXT, "openai", "gpt-4.1", ["default"],
     {**TEXT, "input_price": 2 * M, "output_price": 8 * M, "cache_read_price": 500_000,
      "context_window": 1_047_576, "max_output_tokens": 32_768}),
    ("gpt-4.1-mini", "GPT-4.1 mini", Family.TEXT, "openai", "gpt-4.1-mini", ["default"],
     {**TEXT, "input_price": 400_000, "output_price": 1_600_000, "cache_read_price": 100_000,
      "context_window": 1_047_576, "max_output_tokens": 32_768}),
    ("o3", "o3", Family.TEXT, "openai", "o3", ["enterprise"],
     {**TEXT, "input_price": 2 * M, "output_price": 8 * M, "cache_read_price": 500_000,
      "context_window": 200_000, "max_output_tokens": 100_000}),
    ("sora-2", "Sora 2", Family.VIDEO, "openai", "sora-2", ["default"],
     {"capabilities": ["video-generation"], "video_price_per_second": 100_000,
      "durations": [4, 8, 12], "sizes": ["1280x720", "720x1280"],
      "aspect_ratios": ["16:9", "9:16"], "estimated_seconds": 90, "max_run_seconds": 900,
      "cancel_refund_policy": RefundPolicy.PRORATED}),
    ("gpt-image-1", "GPT Image 1", Family.IMAGE, "openai", "gpt-image-1", ["default"],
     {"capabilities": ["image-generation", "image-edit"], "max_images": 4,
      "image_prices": {"1024x1024/low": 11_000, "1024x1024/medium": 42_000,
                       "1024x1024/high": 167_000, "1536x1024/low": 16_000,
                       "1536x1024/medium": 63_000, "1536x1024/high": 250_000,
                       "1024x1536/low": 16_000, "1024x1536/medium": 63_000,
                       "1024x1536/high": 250_000, "default": 42_000},
      "sizes": ["1024x1024", "1536x1024", "1024x1536"], "estimated_seconds": 20,
      "cancel_refund_policy": RefundPolicy.FULL}),
]  # fmt: skip


def _configure_channel(channel: Channel, default_base_url: str) -> None:
    """Provider settings in the environment switch the channel to its real upstream."""
    prefix = f"BYTESPIKE_{channel.slug.upper()}_"
    base_url = os.environ.get(prefix + "BASE_URL", "")
    api_key = os.environ.get(prefix + "API_KEY", "")
    if base_url or api_key:
        channel.mode = ChannelMode.LIVE
        channel.base_url = base_url or default_base_url
        channel.set_secret(api_key)
    elif not channel.base_url:
        channel.base_url = default_base_url


@transaction.atomic
def seed_catalogue() -> dict[str, RoutingGroup]:
    channels = {}
    for slug, name, kind, base_url in CHANNELS:
        channel, _ = Channel.objects.get_or_create(slug=slug, defaults={"name": name, "kind": kind})
        _configure_channel(channel, base_url)
        channel.save()
        channels[slug] = channel
    groups = {}
    for slug, name, description, multiplier, exclusive in GROUPS:
        groups[slug], _ = RoutingGroup.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "description": description,
                "rate_multiplier": Decimal(multiplier),
                "exclusive": exclusive,
            },
        )
    models = {}
    for slug, name, family, channel, upstream, group_slugs, fields in MODELS:
        model, created = AIModel.objects.get_or_create(
            slug=slug, defaults={"display_name": name, "family": family, **fields}
        )
        models[slug] = model
        if created:
            model.groups.set([groups[g] for g in group_slugs])
            Deployment.objects.create(
                model=model, channel=channels[channel], upstream_model=upstream, priority=1
            )
        if model.family != Family.TEXT and channels[channel].is_sandbox:
            # The sandbox renders in seconds: estimates that match keep the demo's polling brisk.
            quick = math.ceil(settings.BYTESPIKE_SANDBOX_VIDEO_SECONDS) + 2
            if model.estimated_seconds != quick:
                model.estimated_seconds = quick
                model.save(update_fields=["estimated_seconds"])
    for slug, channel, upstream, priority, weight in EXTRA_DEPLOYMENTS:
        Deployment.objects.get_or_create(
            model=models[slug],
            channel=channels[channel],
            upstream_model=upstream,
            defaults={"priority": priority, "weight": weight},
        )
    return groups
