"""Usage and spend reports, read from the hourly rollup (and the per-request log).

One filter serves the console's usage page, its CSV export, the management API and the data
plane's /v1/usage, so a report and its export always agree. Times are UTC; a report covers
whole hours: ``since`` is rounded down and ``until`` up to the hour.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import TruncDay
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from accounts.models import Account
from billing.models import LedgerEntry, LedgerKind, UsageRecord, UsageRollup
from catalogue.models import AIModel, Family
from keys.models import ApiKey

GROUP_BYS = ("day", "hour", "model", "api_key")
DEFAULT_DAYS = 30
MAX_DAYS = 400
SUMS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "images",
    "seconds",
    "credits",
)


class FilterError(ValueError):
    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class UsageFilter:
    since: datetime
    until: datetime  # exclusive
    group_by: str = "day"
    api_key: ApiKey | None = None
    model: AIModel | None = None
    family: str = ""

    def as_params(self) -> dict:
        """The query-string form (what the console puts in the URL and the CSV link)."""
        params = {
            "since": self.since.date().isoformat(),
            "until": (self.until - timedelta(microseconds=1)).date().isoformat(),
            "group_by": self.group_by,
        }
        if self.api_key:
            params["api_key_id"] = self.api_key.public_id
        if self.model:
            params["model"] = self.model.slug
        if self.family:
            params["family"] = self.family
        return params


def _parse_moment(value: str, field: str, *, end: bool) -> datetime:
    """A date (as ``until``, the whole day is included) or an ISO 8601 time, in UTC if naive."""
    value = value.strip()
    try:
        day = parse_date(value)
        moment = None if day else parse_datetime(value)
    except ValueError:  # well formed but impossible, like 2026-02-30
        day = moment = None
    if day is None and moment is None:
        raise FilterError(f"Use a date (2026-11-01) or an ISO 8601 time for {field}.", field)
    if not 1 < (day or moment).year < 9999:
        # Room for the arithmetic that follows (the next day, the next hour, a default window).
        raise FilterError(f"{field} must be between the years 2 and 9998.", field)
    if day is not None:
        moment = datetime.combine(day + timedelta(days=1) if end else day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.UTC)
    return moment


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def usage_filter_from(account: Account, params, *, default_group_by: str = "day") -> UsageFilter:
    """Parse query parameters. Unknown keys of this account are 404; bad values FilterError."""
    now = timezone.now()
    until = params.get("until")
    since = params.get("since")
    until_at = _parse_moment(until, "until", end=True) if until else now
    since_at = (
        _parse_moment(since, "since", end=False)
        if since
        else datetime.combine(
            (until_at - timedelta(days=DEFAULT_DAYS - 1)).date(), time.min, tzinfo=timezone.UTC
        )
    )
    since_at = _floor_hour(since_at)
    until_at = _ceil_hour(until_at)
    if until_at <= since_at:
        raise FilterError("`until` must be after `since`.", "until")
    if until_at - since_at > timedelta(days=MAX_DAYS):
        raise FilterError(f"Ask for at most {MAX_DAYS} days at a time.", "since")
    group_by = params.get("group_by") or default_group_by
    if group_by not in GROUP_BYS:
        raise FilterError(f"group_by is one of {', '.join(GROUP_BYS)}.", "group_by")
    family = params.get("family") or ""
    if family and family not in Family.values:
        raise FilterError(f"family is one of {', '.join(Family.values)}.", "family")
    api_key = None
    if key_id := params.get("api_key_id"):
        api_key = ApiKey.objects.filter(account=account, public_id=key_id).first()
        if api_key is None:
            raise Http404("No such key in this account.")
    model = None
    if slug := params.get("model"):
        model = AIModel.objects.filter(slug=slug).first()
        if model is None:
            raise FilterError(f"There is no model called {slug!r}.", "model")
    return UsageFilter(since_at, until_at, group_by, api_key, model, family)


def _filtered(queryset: QuerySet, account: Account, flt: UsageFilter, time_field: str):
    queryset = queryset.filter(
        account=account, **{f"{time_field}__gte": flt.since, f"{time_field}__lt": flt.until}
    )
    if flt.api_key:
        queryset = queryset.filter(api_key=flt.api_key)
    if flt.model:
        queryset = queryset.filter(model=flt.model)
    if flt.family:
        queryset = queryset.filter(family=flt.family)
    return queryset


def _sums() -> dict:
    return {name: Sum(name) for name in SUMS}


@dataclass
class UsageReport:
    filter: UsageFilter
    buckets: list[dict] = field(default_factory=list)
    totals: dict = field(default_factory=dict)


def usage_report(account: Account, flt: UsageFilter) -> UsageReport:
    """Buckets by day, hour, model or key, plus the totals, from the hourly rollup."""
    rows = _filtered(UsageRollup.objects.all(), account, flt, "hour")
    if flt.group_by == "day":
        buckets = rows.annotate(bucket=TruncDay("hour", tzinfo=timezone.UTC))
    elif flt.group_by == "hour":
        buckets = rows.annotate(bucket=F("hour"))
    elif flt.group_by == "model":
        buckets = rows.annotate(bucket=F("model__slug"), label=F("model__display_name"))
    else:
        buckets = rows.annotate(bucket=F("api_key__public_id"), label=F("api_key__name"))
    group = ["bucket"] + (["label"] if flt.group_by in ("model", "api_key") else [])
    result = list(buckets.values(*group).annotate(**_sums()).order_by("bucket"))
    if flt.group_by in ("model", "api_key"):
        result.sort(key=lambda row: -(row["credits"] or 0))
    totals = rows.aggregate(**_sums())
    return UsageReport(
        flt,
        [{name: row.get(name) or 0 for name in SUMS} | _bucket_fields(row) for row in result],
        {name: totals[name] or 0 for name in SUMS},
    )


def _bucket_fields(row: dict) -> dict:
    bucket = row["bucket"]
    fields = {"bucket": bucket.isoformat() if isinstance(bucket, datetime) else bucket}
    if "label" in row:
        fields["label"] = row["label"]
    return fields


def usage_records(account: Account, flt: UsageFilter) -> QuerySet[UsageRecord]:
    """Single requests in the filter, newest first."""
    return _filtered(
        UsageRecord.objects.select_related("api_key", "model"), account, flt, "created_at"
    ).order_by("-created_at", "-id")


def usage_record_count(account: Account, flt: UsageFilter) -> int:
    """How many requests the filter covers, from the rollup (a COUNT over the log is slow)."""
    return (
        _filtered(UsageRollup.objects.all(), account, flt, "hour").aggregate(calls=Sum("calls"))[
            "calls"
        ]
        or 0
    )


# --- Spend summaries -------------------------------------------------------------------------


def spend_since(account: Account, since: datetime, *, api_key=None) -> int:
    rows = UsageRollup.objects.filter(account=account, hour__gte=_floor_hour(since))
    if api_key is not None:
        rows = rows.filter(api_key=api_key)
    return rows.aggregate(total=Sum("credits"))["total"] or 0


def spend_summary(account: Account) -> dict:
    """Spend today (UTC), over the last 7 and 30 days."""
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    rows = UsageRollup.objects.filter(account=account, hour__gte=today - timedelta(days=29))
    totals = rows.aggregate(
        today=Sum("credits", filter=_since(today)),
        week=Sum("credits", filter=_since(today - timedelta(days=6))),
        month=Sum("credits"),
    )
    return {name: value or 0 for name, value in totals.items()}


def _since(moment):
    return Q(hour__gte=moment)


def daily_spend_by_key(account: Account, days: int = 30) -> tuple[list[date], list[dict]]:
    """For the dashboard chart: the last ``days`` days and, per key, its spend on each day."""
    today = timezone.now().date()
    first = today - timedelta(days=days - 1)
    rows = (
        UsageRollup.objects.filter(
            account=account,
            hour__gte=datetime.combine(first, time.min, tzinfo=timezone.UTC),
        )
        .annotate(day=TruncDay("hour", tzinfo=timezone.UTC))
        .values("day", "api_key__public_id", "api_key__name")
        .annotate(credits=Sum("credits"))
    )
    days_list = [first + timedelta(days=i) for i in range(days)]
    series: dict[str, dict] = {}
    for row in rows:
        key = row["api_key__public_id"] or "—"
        entry = series.setdefault(
            key, {"key": key, "name": row["api_key__name"] or "Deleted key", "days": {}}
        )
        entry["days"][row["day"].date()] = row["credits"] or 0
    ordered = sorted(series.values(), key=lambda s: -sum(s["days"].values()))
    for entry in ordered:
        entry["values"] = [entry["days"].get(day, 0) for day in days_list]
        entry["total"] = sum(entry["values"])
    return days_list, ordered


def key_spend(account: Account, keys, *, days: int = 30) -> dict[int, int]:
    """Spend of each key over the last ``days`` days, by key id."""
    since = timezone.now() - timedelta(days=days)
    rows = (
        UsageRollup.objects.filter(account=account, api_key__in=keys, hour__gte=_floor_hour(since))
        .values("api_key_id")
        .annotate(credits=Sum("credits"))
    )
    return {row["api_key_id"]: row["credits"] or 0 for row in rows}


def key_totals(keys) -> dict[int, int]:
    """Lifetime spend of each key (against its quota), by key id."""
    from billing.models import KeyTotal

    return dict(KeyTotal.objects.filter(api_key__in=keys).values_list("api_key_id", "credits"))


# --- Ledger ----------------------------------------------------------------------------------


def ledger_for_account(
    account: Account,
    *,
    kind: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[LedgerEntry]:
    entries = LedgerEntry.objects.filter(account=account).select_related("created_by")
    if kind:
        if kind not in LedgerKind.values:
            raise FilterError(f"kind is one of {', '.join(LedgerKind.values)}.", "kind")
        entries = entries.filter(kind=kind)
    if since:
        entries = entries.filter(created_at__gte=since)
    if until:
        entries = entries.filter(created_at__lt=until)
    return entries.order_by("-created_at", "-id")


def ledger_filter_from(params) -> dict:
    """kind, since and until from query parameters (dates or ISO times; until is inclusive)."""
    result = {"kind": params.get("kind") or ""}
    if result["kind"] and result["kind"] not in LedgerKind.values:
        raise FilterError(f"kind is one of {', '.join(LedgerKind.values)}.", "kind")
    if since := params.get("since"):
        result["since"] = _parse_moment(since, "since", end=False)
    if until := params.get("until"):
        result["until"] = _parse_moment(until, "until", end=True)
    return result
