"""Template filters that show micro-credits as credits (formatting lives in core.money), and
the cell every money column of a table uses."""

from django import template

from core.money import exact_places, format_credits, format_credits_exact

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
    text = format_credits(abs(micros), places=exact_places(micros))
    if micros > 0:
        return f"+{text}"
    if micros < 0:
        return f"{MINUS}{text}"
    return text


@register.inclusion_tag("partials/money_cell.html")
def money_cell(
    micros,
    *,
    exact: bool = False,
    signed: bool = False,
    note: str = "",
    shortfall: int = 0,
    element: str = "td",
) -> dict:
    """A money column's cell: the amount right-aligned in tabular figures, as ``credits``, or
    ``credits_exact`` (``exact``), or ``signed_credits`` coloured in or out (``signed``); then an
    optional muted ``note`` ("est.") and the ``shortfall`` the wallet could not cover. Outside a
    table (a list's amounts) ``element="span"``."""
    return {
        "amount": int(micros or 0),
        "exact": exact,
        "signed": signed,
        "note": note,
        "shortfall": shortfall,
        "element": "span" if element == "span" else "td",
    }
