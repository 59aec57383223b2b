"""Template filters that show micro-credits as credits (formatting lives in core.money), and
the cell every money column of a table uses."""

from django import template

from core.money import (
    exact_places,
    format_credits,
    format_credits_exact,
    format_credits_fixed,
    to_credits,
)

register = template.Library()

MINUS = "\N{MINUS SIGN}"


@register.filter
def credits(micros) -> str:
    """1,234.57: two decimals (more when the amount is below a cent)."""
    return format_credits(int(micros or 0))


@register.filter
def credits_exact(micros) -> str:
    """1,234.5678: every decimal the amount has, so sums shown in tables add up exactly."""
    return format_credits_exact(int(micros or 0))


@register.filter
def signed_credits(micros) -> str:
    """+5.00 or -1.25 with a true minus sign (U+2212), exact like ``credits_exact``."""
    micros = int(micros or 0)
    return _signed(micros, format_credits(abs(micros), places=exact_places(micros)))


def _signed(micros: int, text: str) -> str:
    if micros > 0:
        return f"+{text}"
    if micros < 0:
        return f"{MINUS}{text}"
    return text


@register.filter
def credits_fixed(micros, places=2) -> str:
    """1,234.5700 with ``places`` decimals, whatever the amount: a column's figures line up."""
    return format_credits_fixed(int(micros or 0), int(places))


@register.filter
def signed_credits_fixed(micros, places=2) -> str:
    """+5.000000 or -1.250000 with ``places`` decimals and a true minus sign."""
    micros = int(micros or 0)
    return _signed(micros, format_credits_fixed(abs(micros), int(places)))


@register.inclusion_tag("partials/money_cell.html")
def money_cell(
    micros,
    *,
    places: int = 2,
    signed: bool = False,
    note: str = "",
    shortfall: int = 0,
    element: str = "td",
    cell_id: str = "",
) -> dict:
    """A money column's cell: the amount right-aligned in tabular figures with the column's
    fixed ``places`` (so decimal points line up), the exact amount in a ``<data value>`` and
    its title, focusable when the figure shown is rounded; ``signed`` colours it in or out with
    a sign. Then an optional muted ``note`` ("est.") and the ``shortfall`` the wallet could not
    cover. Outside a table (a list's amounts) ``element="span"``."""
    amount = int(micros or 0)
    shown = format_credits_fixed(abs(amount) if signed else amount, int(places))
    exact = format_credits(abs(amount) if signed else amount, places=exact_places(amount))
    if signed:
        shown, exact = _signed(amount, shown), _signed(amount, exact)
    return {
        "amount": amount,
        "shown": shown,
        "exact": exact,
        "value": to_credits(amount),
        "rounded": amount % 10 ** max(0, 6 - int(places)) != 0,
        "signed": signed,
        "note": note,
        "shortfall": shortfall,
        "element": "span" if element == "span" else "td",
        "cell_id": cell_id,
    }
