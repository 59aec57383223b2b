"""Prices after the group multiplier. The multiplier is applied here and nowhere else."""

from decimal import ROUND_HALF_UP, Decimal

from billing.money import credits_json


def apply_multiplier(micros: int, multiplier: Decimal) -> int:
    return int((Decimal(micros) * Decimal(multiplier)).to_integral_value(ROUND_HALF_UP))


def price_card(model, multiplier: Decimal) -> dict:
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
