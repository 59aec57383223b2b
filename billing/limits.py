"""A key's lifetime quota and rolling 5h/1d/7d caps, checked before a call is admitted.

Spend counts what was charged plus what is held for calls still running, so a burst of
concurrent calls cannot overrun a limit together. A limit is "reached" when that spend is at or
above it: the call that crosses a limit is allowed, the next one is refused (402 for the
quota, 429 for a cap). Caps use five-minute buckets, so a window is exact to five minutes.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Min, Q, Sum
from django.utils import timezone

from billing.models import Hold, HoldStatus, KeySpend, KeyTotal
from billing.money import format_credits
from billing.services import KEY_SPEND_BUCKET, QuotaExceededError, RateLimitExceededError

WINDOWS = (
    ("5h", timedelta(hours=5), "rate_limit_5h"),
    ("1d", timedelta(days=1), "rate_limit_1d"),
    ("7d", timedelta(days=7), "rate_limit_7d"),
)


@dataclass(frozen=True)
class LimitState:
    """What the X-Quota-Remaining-Credits and X-RateLimit-* headers report (micro-credits)."""

    quota_remaining: int | None = None
    rate_limit: int | None = None
    rate_remaining: int | None = None
    rate_reset: int | None = None  # unix seconds


def key_limits_check(key, *, now: datetime | None = None) -> LimitState:
    """``key`` is anything with key_id, quota and the rate_limit_* fields (KeyPrincipal)."""
    caps = [(name, span, getattr(key, field)) for name, span, field in WINDOWS]
    caps = [(name, span, cap) for name, span, cap in caps if cap]
    if not key.quota and not caps:
        return LimitState()
    now = now or timezone.now()
    held = (
        Hold.objects.filter(api_key_id=key.key_id, status=HoldStatus.OPEN).aggregate(
            total=Sum("amount")
        )["total"]
        or 0
    )
    state = {}
    if key.quota:
        spent = KeyTotal.objects.filter(api_key_id=key.key_id).values_list("credits", flat=True)
        used = (spent.first() or 0) + held
        if used >= key.quota:
            raise QuotaExceededError(
                f"This key reached its quota of {format_credits(key.quota)} credits."
            )
        state["quota_remaining"] = key.quota - used
    if caps:
        state.update(_check_caps(key.key_id, caps, held, now))
    return LimitState(**state)


def _check_caps(key_id: int, caps, held: int, now: datetime) -> dict:
    aggregates = {}
    for name, span, _ in caps:
        since = Q(bucket__gte=now - span)
        aggregates[f"spent_{name}"] = Sum("credits", filter=since)
        aggregates[f"oldest_{name}"] = Min("bucket", filter=since)
    longest = max(span for _, span, _ in caps)
    row = KeySpend.objects.filter(api_key_id=key_id, bucket__gte=now - longest).aggregate(
        **aggregates
    )
    tightest = None
    for name, span, cap in caps:
        used = (row[f"spent_{name}"] or 0) + held
        oldest = row[f"oldest_{name}"] or now
        reset = int((oldest + span + KEY_SPEND_BUCKET).timestamp())
        if used >= cap:
            raise RateLimitExceededError(
                f"This key reached its {name} spending cap of {format_credits(cap)} credits; "
                f"it frees up by {datetime.fromtimestamp(reset, tz=now.tzinfo):%H:%M} UTC."
            ).with_reset(cap, reset)
        remaining = cap - used
        if tightest is None or remaining < tightest[1]:
            tightest = (cap, remaining, reset)
    limit, remaining, reset = tightest
    return {"rate_limit": limit, "rate_remaining": remaining, "rate_reset": reset}
