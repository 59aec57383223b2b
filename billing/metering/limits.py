"""What a call is admitted against: a key's limits and its account's concurrency, and what a
refusal or an answer reports about them.

Every limit is "reached" when what is used is at or above it: the call that crosses a limit is
allowed, the next one is refused. Used means charged plus reserved by calls still running, so a
burst of concurrent calls cannot overrun a limit together.

- ``quota``: lifetime credits (402 ``quota_exceeded``).
- ``rate_limit_5h`` / ``_1d`` / ``_7d``: credits in a rolling window, counted in five-minute
  buckets (429 ``rate_limit_exceeded``; the window is exact to five minutes).
- ``rpm``: calls admitted in the last 60 seconds, ``tpm``: tokens (input + output) in the last
  60 seconds, counted in one-second buckets; a call reserves its estimate of tokens, corrected
  to what it used when it settles (429 ``rate_limit_exceeded``).
- ``max_concurrent``: the key's calls in flight; the account's own limit
  (``Wallet.concurrency_limit``) applies to all its keys together (429 ``concurrency_limit``).
- hard budgets (``BudgetLimit``, billing/budgets.py): credits charged to the account, or to the
  keys of one member, in a calendar month or ever (402 ``budget_exceeded``).
"""

from dataclasses import dataclass

from billing.errors import QuotaExceededError, RateLimitExceededError
from billing.metering.headers import budget_headers

BUCKET_SECONDS = 300  # credit windows
WINDOWS = (("5h", 5 * 3600, "rate_limit_5h"), ("1d", 86400, "rate_limit_1d"),
           ("7d", 7 * 86400, "rate_limit_7d"))  # fmt: skip
MINUTE = 60


@dataclass(frozen=True)
class KeyLimits:
    """A key's limits (None: no limit), read off its principal."""

    key_id: int
    quota: int | None = None
    rate_limit_5h: int | None = None
    rate_limit_1d: int | None = None
    rate_limit_7d: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    limits_set_at: int = 0  # when the key's limits last changed (unix microseconds)

    @classmethod
    def of(cls, principal) -> "KeyLimits":
        return cls(
            key_id=principal.key_id,
            quota=principal.quota or None,
            rate_limit_5h=principal.rate_limit_5h or None,
            rate_limit_1d=principal.rate_limit_1d or None,
            rate_limit_7d=principal.rate_limit_7d or None,
            rpm=getattr(principal, "rpm", None) or None,
            tpm=getattr(principal, "tpm", None) or None,
            max_concurrent=getattr(principal, "max_concurrent", None) or None,
            limits_set_at=getattr(principal, "limits_set_at", 0),
        )

    @property
    def caps(self) -> list[tuple[str, int, int]]:
        """(name, seconds, cap) of the credit windows the key has."""
        return [(n, s, getattr(self, a)) for n, s, a in WINDOWS if getattr(self, a)]

    @property
    def counts_spend(self) -> bool:
        """Whether admission needs the key's charged spend (its quota or a credit window)."""
        return bool(self.quota or self.caps)

    @property
    def any(self) -> bool:
        return bool(self.counts_spend or self.rpm or self.tpm or self.max_concurrent)

    @property
    def version(self) -> str:
        """Changes when the limits do, even back to values they had before (``limits_set_at``):
        counters kept under it start afresh, seeded with what was spent meanwhile."""
        values = (self.quota, self.rate_limit_5h, self.rate_limit_1d, self.rate_limit_7d,
                  self.rpm, self.tpm, self.max_concurrent, self.limits_set_at)  # fmt: skip
        return "-".join("" if v is None else str(v) for v in values)


@dataclass(frozen=True)
class BudgetLimit:
    """A hard budget a call is admitted against: what ``scope`` (``account:5``,
    ``member:5:12``) was charged in ``period`` (``2026-12``: a month of the account's time zone,
    or ``life``) must stay within ``limit``. ``label`` names it for the caller."""

    scope: str
    period: str
    limit: int
    label: str  # "the account's monthly budget"
    reset: int = 0  # unix seconds when the period ends (a lifetime budget: never, 0)
    zone: str = "UTC"  # the account's time zone, which the months are of
    # When the budget was set: calls count against it only while it is there (and hard), so a
    # budget set again must not carry on the counter of the one before it.
    version: str = ""

    @property
    def counter(self) -> str:
        return f"{self.scope}:{self.period}:{self.version}"


@dataclass(frozen=True)
class Headroom:
    """One limit as it stands after an admission: what the response headers report."""

    name: str  # quota, 5h, 1d, 7d, rpm, tpm, concurrency, budget
    limit: int
    remaining: int
    reset: int  # unix seconds when it frees up (for a quota: never, 0)
    label: str = ""  # a budget's

    @property
    def unit(self) -> str:
        return {"rpm": "requests", "tpm": "tokens", "concurrency": "requests"}.get(
            self.name, "credits"
        )

    @property
    def share_left(self) -> float:
        return self.remaining / self.limit if self.limit else 1.0


@dataclass(frozen=True)
class LimitState:
    """What an admitted call reports: the key's quota left, its tightest rolling limit, and the
    hard budget it counts against with the least left."""

    quota_remaining: int | None = None
    tightest: Headroom | None = None
    budget: Headroom | None = None


def refusal(headroom: Headroom, now: int) -> Exception:
    """The error for a reached limit, with what frees it up when."""
    if headroom.name == "budget":
        from billing.errors import BudgetExceededError

        error = BudgetExceededError(
            f"This call would go over {headroom.label} of {_credits(headroom.limit)} credits "
            f"({_credits(max(headroom.remaining, 0))} left)."
        )
        error.headers.update(budget_headers(headroom.remaining, headroom.reset))
        return error
    if headroom.name == "quota":
        return QuotaExceededError(
            f"This key reached its quota of {_credits(headroom.limit)} credits."
        )
    if headroom.name == "concurrency":
        from billing.errors import ConcurrencyLimitError

        error = ConcurrencyLimitError(
            f"Too many calls in flight for this key or account (limit {headroom.limit}). "
            "Retry when one finishes."
        )
    elif headroom.name in ("rpm", "tpm"):
        what = "requests" if headroom.name == "rpm" else "tokens"
        error = RateLimitExceededError(
            f"This key reached its limit of {headroom.limit:,} {what} per minute; retry in "
            f"{max(headroom.reset - now, 1)} s."
        )
    else:
        error = RateLimitExceededError(
            f"This key reached its {headroom.name} spending cap of {_credits(headroom.limit)} "
            f"credits; it frees up in {_duration(headroom.reset - now)}."
        )
    return error.with_limit(headroom)


def _credits(micros: int) -> str:
    from core.money import format_credits

    return format_credits(micros)


def _duration(seconds: int) -> str:
    seconds = max(seconds, 1)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
