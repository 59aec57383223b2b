"""The wallet and limit headers of a data-plane answer (SPEC §4, §11). Made of plain numbers, so
that the refusals (billing/errors.py, billing/metering/limits.py) and the answers share them
without importing each other."""

from typing import TYPE_CHECKING

from core.money import credits_text

if TYPE_CHECKING:
    from billing.metering.limits import LimitState


def limit_headers(available: int, limits: "LimitState", reserved: int = 0,
                  charged: int | None = None) -> dict:  # fmt: skip
    """``limits`` counts the call's reservation; once settled, what it was charged counts
    instead (``charged``). Credits are in credits, requests and tokens as counts."""
    headers = {"X-Org-Quota-Remaining-Credits": credits_text(max(available, 0))}
    refund = 0 if charged is None else reserved - charged
    if limits.quota_remaining is not None:
        remaining = max(limits.quota_remaining + refund, 0)
        headers["X-Quota-Remaining-Credits"] = credits_text(remaining)
    tightest = limits.tightest
    if tightest is not None:
        remaining = tightest.remaining + (refund if tightest.unit == "credits" else 0)
        headers.update(rate_limit_headers(tightest.name, tightest.limit, remaining, tightest.reset))
    if limits.budget is not None:
        headers.update(budget_headers(limits.budget.remaining + refund, limits.budget.reset))
    return headers


def budget_headers(remaining: int, reset: int) -> dict:
    """The hard budget (account's, project's or member's) with the least left: credits left and
    when its month ends (unix seconds; 0 for a lifetime budget)."""
    return {
        "X-Budget-Remaining-Credits": credits_text(max(remaining, 0)),
        "X-Budget-Reset": str(reset),
    }


def rate_limit_headers(name: str, limit: int, remaining: int, reset: int) -> dict:
    in_credits = name not in ("rpm", "tpm", "concurrency")
    show = credits_text if in_credits else str
    return {
        "X-RateLimit-Limit": show(limit),
        "X-RateLimit-Remaining": show(max(remaining, 0)),
        "X-RateLimit-Reset": str(reset),
    }
