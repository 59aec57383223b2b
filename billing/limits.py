"""A key's lifetime quota and rolling 5h/1d/7d caps, read from the database: what the key's
usage endpoint and pages show, and how calls are admitted while the counters (Redis) are down.

Spend counts what was charged plus what is held for calls still running, so a burst of
concurrent calls cannot overrun a limit together. A limit is "reached" when that spend is at or
above it: the call that crosses a limit is allowed, the next one is refused (402 for the
quota, 429 for a cap). Caps use five-minute buckets, so a window is exact to five minutes.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Min, Q, Sum
from django.utils import timezone

from billing.metering.limits import Headroom, LimitState, refusal
from billing.models import Hold, HoldStatus, KeySpend, KeyTotal

KEY_SPEND_BUCKET = timedelta(minutes=5)

WINDOWS = (
    ("5h", timedelta(hours=5), "rate_limit_5h"),
    ("1d", timedelta(days=1), "rate_limit_1d"),
    ("7d", timedelta(days=7), "rate_limit_7d"),
)


@dataclass(frozen=True)
class Window:
    cap: int
    used: int
    reset: int | None  # unix seconds when the oldest spend in the window drops out

    @property
    def remaining(self) -> int:
        return max(self.cap - self.used, 0)


@dataclass(frozen=True)
class KeyUsage:
    """A key's spend against its limits (micro-credits): charged plus held."""

    quota: int
    quota_used: int
    windows: dict[str, Window | None] = field(default_factory=dict)


def key_usage(key, *, now: datetime | None = None, complete: bool = False) -> KeyUsage:
    """``key`` is anything with key_id, quota and the rate_limit_* fields (KeyPrincipal).

    Without ``complete``, a key with no limits costs no query (the admission path).
    """
    caps = key_caps(key)
    if not key.quota and not caps and not complete:
        return key_usage_from(key, spent=0, held=0, windows={})
    now = now or timezone.now()
    held = (
        Hold.objects.filter(api_key_id=key.key_id, status=HoldStatus.OPEN).aggregate(
            total=Sum("amount")
        )["total"]
        or 0
    )
    spent = 0
    if key.quota or complete:
        spent = (
            KeyTotal.objects.filter(api_key_id=key.key_id).values_list("credits", flat=True).first()
            or 0
        )
    windows = {}
    if caps:
        aggregates = {}
        for name, span, _ in caps:
            since = Q(bucket__gte=now - span)
            aggregates[f"spent_{name}"] = Sum("credits", filter=since)
            aggregates[f"oldest_{name}"] = Min("bucket", filter=since)
        longest = max(span for _, span, _ in caps)
        row = KeySpend.objects.filter(api_key_id=key.key_id, bucket__gte=now - longest).aggregate(
            **aggregates
        )
        windows = {name: (row[f"spent_{name}"], row[f"oldest_{name}"]) for name, _, _ in caps}
    return key_usage_from(key, spent=spent, held=held, windows=windows)


def key_caps(key) -> list[tuple[str, timedelta, int]]:
    """The key's capped windows: (name, span, cap) for each rate_limit_* that is set."""
    return [(name, span, getattr(key, attr)) for name, span, attr in WINDOWS if getattr(key, attr)]


def key_usage_from(
    key, *, spent: int, held: int, windows: dict[str, tuple[int | None, datetime | None]]
) -> KeyUsage:
    """A KeyUsage from what was read: the key's lifetime charges, its open holds, and per capped
    window the credits charged in it and its oldest bucket (None, None when nothing was)."""
    usage = {name: None for name, _, _ in WINDOWS}
    for name, span, cap in key_caps(key):
        charged, oldest = windows.get(name, (None, None))
        reset = int((oldest + span + KEY_SPEND_BUCKET).timestamp()) if oldest else None
        usage[name] = Window(cap, (charged or 0) + held, reset)
    return KeyUsage(quota=key.quota, quota_used=(spent or 0) + held, windows=usage)


def key_limits_check(key, *, now: datetime | None = None, pending: int = 0) -> LimitState:
    """Raise when the key has reached its quota or a cap; else what the headers report.

    ``pending`` is the hold of the call being admitted, when it is already placed (in the same
    transaction, see ``hold_place``): it does not count against the call itself.
    """
    usage = key_usage(key, now=now)
    moment = int((now or timezone.now()).timestamp())
    quota_left = None
    if usage.quota:
        quota_left = usage.quota - usage.quota_used + pending
        if quota_left < max(pending, 1):  # the call's worst case must fit: never below zero
            raise refusal(Headroom("quota", usage.quota, quota_left, 0), moment)
    windows = []
    for name, window in usage.windows.items():
        if window is None:
            continue
        headroom = Headroom(name, window.cap, window.cap - window.used + pending,
                            window.reset or moment)  # fmt: skip
        if headroom.remaining < max(pending, 1):
            raise refusal(headroom, moment)
        windows.append(headroom)
    tightest = min(windows, key=lambda h: h.share_left, default=None)
    return LimitState(quota_remaining=quota_left, tightest=tightest)
