"""A model's list prices as callers of a routing group pay them: the group's multiplier applied
(``apply_multiplier``, the one place it is rounded) and shown as a price card in credits.
What a call costs from its usage is billing's (billing/pricing.py)."""

from decimal import ROUND_HALF_UP, Decimal

from core.money import credits_json


def apply_multiplier(micros, multiplier) -> int:
    """Round half up to a whole micro-credit."""
    return int((Decimal(micros) * Decimal(multiplier)).to_integral_value(ROUND_HALF_UP))


def price_card(model, multiplier) -> dict:
    """A model's prices for callers of a group, in credits (JSON numbers)."""

    def price(micros: int):
        return credits_json(apply_multiplier(micros, multiplier))

    if model.family == "text":
        return {
            "unit": "1M tokens",
            "input": price(model.input_price),
            "output": price(model.output_price),
            "cache_read": price(model.cache_read_price),
            "cache_write": price(model.cache_write_price),
        }
    if model.family == "image":
        return {
            "unit": "image",
            "per_image": {tier: price(micros) for tier, micros in model.image_prices.items()},
        }
    return {
        "unit": "second",
        "per_second": price(model.video_price_per_second),
        "submit_fee": price(model.video_submit_fee),
    }
