"""Template filters that show micro-credits as credits (formatting lives in billing.money)."""

from django import template

from billing.money import format_credits

register = template.Library()

MINUS = "\N{MINUS SIGN}"


def exact_places(micros: int) -> int:
    """As many decimals as the amount has: two at least, six at most (1.25, 0.000345)."""
    places = 2
    while places < 6 and micros % 10 ** (6 - places):
        places += 1
    return places


@register.filter
def credits(micros) -> str:
    """1,234.57: two decimals (more when the amount is below a cent)."""
    return format_credits(int(micros or 0))


@register.filter
def credits_exact(micros) -> str:
    """1,234.5678: every decimal the amount has, so sums shown in tables add up exactly."""
    micros = int(micros or 0)
    return format_credits(micros, places=exact_places(micros))


@register.filter
def signed_credits(micros) -> str:
    """+5.00 or -1.25 with a true minus sign (U+2212), exact like ``credits_exact``."""
    micros = int(micros or 0)
    text = format_credits(abs(micros), places=exact_places(micros))
    if micros > 0:
        return f"+{text}"
    if micros < 0:
        return f"{MINUS}{text}"
    return text
