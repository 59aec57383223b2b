"""Credits and micro-credits: the one place that converts, parses and formats money.

1 credit = 1 USD = 1,000,000 micro-credits. Amounts are stored and computed as integers; the
APIs show credits as JSON numbers with up to six decimals.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICROS_PER_CREDIT = 1_000_000
# Far above any real wallet, far below BigIntegerField's limit: refuses absurd amounts.
MAX_MICROS = 10**9 * MICROS_PER_CREDIT


class AmountError(ValueError):
    """An amount that is not a valid number of credits; the message is user-facing."""


def to_micros(value, *, allow_zero: bool = True) -> int:
    """Parse credits (int, Decimal, or a numeric string; not float) into micro-credits."""
    if isinstance(value, bool) or value is None:
        raise AmountError("Enter an amount in credits.")
    if isinstance(value, float):
        value = repr(value)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise AmountError("Enter an amount in credits, like 12.5.") from None
    if not amount.is_finite():
        raise AmountError("Enter a finite amount.")
    if amount < 0:
        raise AmountError("The amount cannot be negative.")
    if amount == 0 and not allow_zero:
        raise AmountError("The amount must be more than zero.")
    micros = amount * MICROS_PER_CREDIT
    if micros != micros.to_integral_value():
        raise AmountError("Use at most six decimal places.")
    if micros > MAX_MICROS:
        raise AmountError("The amount is too large.")
    return int(micros)


def to_credits(micros: int) -> Decimal:
    return Decimal(micros) / MICROS_PER_CREDIT


def credits_json(micros: int) -> float | int:
    """A JSON number with up to six decimals (exact for any amount below 2**53 micros)."""
    if micros % MICROS_PER_CREDIT == 0:
        return micros // MICROS_PER_CREDIT
    return float(to_credits(micros))


def credits_text(micros: int) -> str:
    """An amount as typed in a form and sent in a header: plain decimals without trailing zeros
    (12.5, not 12.500000) and never an exponent (0.000001, not 1e-06)."""
    text = f"{to_credits(micros):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_credits(micros: int, *, places: int = 2) -> str:
    """For people: thousands separators, two decimals (more when the amount is tiny)."""
    credits = to_credits(micros)
    if 0 < abs(credits) < Decimal("0.01"):
        places = 6
    return f"{credits:,.{places}f}"


def exact_places(micros: int) -> int:
    """As many decimals as the amount has: two at least, six at most (1.25, 0.000345)."""
    places = 2
    while places < 6 and micros % 10 ** (6 - places):
        places += 1
    return places


def format_credits_exact(micros: int) -> str:
    """1,234.5678: every decimal the amount has, so sums shown in tables add up exactly."""
    return format_credits(micros, places=exact_places(micros))


def format_credits_fixed(micros: int, places: int = 2) -> str:
    """For a money column: always ``places`` decimals (rounded half up), so a column's decimal
    points line up; the exact amount goes beside it (``format_credits_exact``)."""
    credits = to_credits(micros).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{credits:,.{places}f}"


def plain_credits(micros: int) -> str:
    """For machines (CSV): every decimal the amount has, no thousands separators."""
    return format_credits_exact(micros).replace(",", "")
