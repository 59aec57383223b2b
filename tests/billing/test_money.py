"""Parsing and formatting credits."""

from decimal import Decimal

import pytest

from catalogue.pricing import apply_multiplier
from core.money import (
    AmountError,
    credits_json,
    format_credits,
    format_credits_fixed,
    plain_credits,
    to_micros,
)


@pytest.mark.parametrize(
    ("value", "micros"),
    [(0, 0), ("0", 0), (1, 1_000_000), ("12.5", 12_500_000), ("0.000001", 1),
     (Decimal("3.75"), 3_750_000), (2.5, 2_500_000)],
)  # fmt: skip
def test_amounts_parse_to_exact_micro_credits(value, micros):
    assert to_micros(value) == micros


@pytest.mark.parametrize(
    ("value", "message"),
    [("-1", "negative"), ("0.0000001", "six decimal"), ("abc", "Enter an amount"),
     ("1e30", "too large"), ("NaN", "finite"), ("Infinity", "finite"), (None, "Enter"),
     (True, "Enter")],
)  # fmt: skip
def test_bad_amounts_are_refused_with_a_clear_message(value, message):
    with pytest.raises(AmountError, match=message):
        to_micros(value)


def test_zero_can_be_refused():
    with pytest.raises(AmountError, match="more than zero"):
        to_micros("0", allow_zero=False)


def test_json_and_display_forms():
    assert credits_json(2_000_000) == 2
    assert credits_json(1_500_000) == 1.5
    assert credits_json(1) == 0.000001
    assert format_credits(1_234_567_890) == "1,234.57"
    assert format_credits(420) == "0.000420"


def test_multiplier_rounds_half_up_to_whole_micros():
    assert apply_multiplier(1_000_000, Decimal("0.85")) == 850_000
    assert apply_multiplier(3, Decimal("0.5")) == 2
    assert apply_multiplier(0, Decimal("1.5")) == 0


@pytest.mark.parametrize(
    ("micros", "places", "shown"),
    [(160_000, 4, "0.1600"), (26_923, 4, "0.0269"), (8_050, 4, "0.0081"), (5_000, 2, "0.01"),
     (4_999, 2, "0.00"), (-1_005_000, 2, "-1.01"), (1_234_567_891, 2, "1,234.57"),
     (0, 4, "0.0000")],
)  # fmt: skip
def test_a_column_figure_has_fixed_decimals_rounded_half_up(micros, places, shown):
    assert format_credits_fixed(micros, places) == shown


def test_csv_credits_are_exact_and_plain():
    assert plain_credits(1_234_567_891) == "1234.567891" and plain_credits(8_050) == "0.008050"
