"""What a call costs, from its usage and the model's list prices, times the group multiplier.

The multiplier is applied once, to the call's total (``catalogue.pricing.apply_multiplier``).
Everything downstream (the charge, the key's quota and rolling caps, every report) reads the
charged amount, so all of them agree.
"""

from dataclasses import dataclass
from decimal import Decimal

from catalogue.pricing import apply_multiplier

PER_MILLION = Decimal(1_000_000)
# Images in a text request's input, when estimating a hold before the upstream counts them.
TOKENS_PER_INPUT_IMAGE = 1_600


@dataclass(frozen=True)
class TokenUsage:
    """A text call's tokens, normalised: ``input_tokens`` excludes cached ones (SPEC §5)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


def text_cost(model, multiplier, usage: TokenUsage) -> int:
    list_price = (
        usage.input_tokens * model.input_price
        + usage.output_tokens * model.output_price
        + usage.cache_read_tokens * model.cache_read_price
        + usage.cache_write_tokens * model.cache_write_price
    )
    return apply_multiplier(Decimal(list_price) / PER_MILLION, multiplier)


def text_estimate(model, multiplier, *, input_tokens: int, max_tokens: int | None) -> int:
    """The worst case held before a text call: the input at full price (no cache discount) and
    every output token allowed (``max_tokens``, else the model's maximum)."""
    output = max_tokens or model.max_output_tokens
    return text_cost(model, multiplier, TokenUsage(input_tokens=input_tokens, output_tokens=output))


def image_unit_price(model, *, size: str = "", quality: str = "") -> int:
    """List price of one image: the "<size>/<quality>" tier, else "<size>", else "default"."""
    prices = model.image_prices or {}
    for tier in (f"{size}/{quality}", size, "default"):
        if tier in prices:
            return int(prices[tier])
    return 0


def image_cost(model, multiplier, *, count: int, size: str = "", quality: str = "") -> int:
    return apply_multiplier(count * image_unit_price(model, size=size, quality=quality), multiplier)


def video_cost(model, multiplier, *, seconds: int) -> int:
    return apply_multiplier(
        seconds * model.video_price_per_second + model.video_submit_fee, multiplier
    )
