"""Usage and spend reports, read from the hourly rollup (and the per-request log).

One filter serves the console's usage page, its CSV export, the management API and the data
plane's /v1/usage, so a report and its export always agree. A report covers whole hours:
``since`` is rounded down and ``until`` up to the hour. Dates, days, presets ("yesterday") and
months are read in a time zone: the account's on the console, UTC on the APIs.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import TruncDay
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from accounts.models import Account, Project, User
from billing.models import LedgerEntry, LedgerKind, UsageRecord, UsageRollup, UsageTagRollup
from billing.tags import tag_filter
from catalogue.models import AIModel, Family
from core.errors import ApiError
from keys.models import ApiKey

GROUP_BYS = ("day", "hour", "model", "api_key", "project", "member", "tag")
# The console's attribution views too: every key and model pair, grouped by key then model, or
# by model then key.
PAIR_GROUP_BYS = ("key_model", "model_key")
CONSOLE_GROUP_BYS = GROUP_BYS + PAIR_GROUP_BYS
PRESETS = {
    "today": "Today",
    "yesterday": "Yesterday",
    "7d": "Last 7 days",
    "mtd": "Month to date",
    "last_month": "Last month",
}
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
    """A filter refused. ``str()`` is the API's wording (parameter names); ``console`` says the
    same in the words of the console's forms (their labels), when they differ."""

    def __init__(self, message: str, field: str, *, console: str = ""):
        super().__init__(message)
        self.field = field
        self.console = console or message


ORDER_ERROR = "From must be on or before To."


def _order_error() -> FilterError:
    return FilterError("`since` must be on or before `until`.", "until", console=ORDER_ERROR)


@dataclass(frozen=True)
class UsageFilter:
    since: datetime
    until: datetime  # exclusive
    group_by: str = "day"
    api_key: ApiKey | None = None
    model: AIModel | None = None
    family: str = ""
    tz: tzinfo = timezone.UTC  # the zone dates and days are read in
    preset: str = ""
    tag: str = ""  # key=value (billing/tags.py); the URL and the API say key:value
    project: Project | None = None  # ?project_id=: only this project's usage
    member: User | None = None  # ?member=<e-mail>: only the calls of the keys they created
    # Only the usage of these projects (ids): a developer's or viewer's view of the account.
    # None: the whole account. Not a URL parameter; set from who is looking.
    projects: frozenset[int] | None = None

    @property
    def tag_param(self) -> str:
        return self.tag.replace("=", ":", 1)

    @property
    def first_day(self) -> date:
        return self.since.astimezone(self.tz).date()

    @property
    def last_day(self) -> date:
        return (self.until - timedelta(microseconds=1)).astimezone(self.tz).date()

    def dates(self) -> dict:
        return {"since": self.first_day.isoformat(), "until": self.last_day.isoformat()}

    def as_params(self) -> dict:
        """The query-string form (what the console puts in the URL and the CSV link): a preset
        stays a preset, so a bookmarked "yesterday" is always yesterday."""
        params = {"preset": self.preset} if self.preset else self.dates()
        params["group_by"] = self.group_by
        if self.api_key:
            params["api_key_id"] = self.api_key.public_id
        if self.model:
            params["model"] = self.model.slug
        if self.family:
            params["family"] = self.family
        if self.tag:
            params["tag"] = self.tag_param
        if self.project:
            params["project_id"] = self.project.public_id
        if self.member:
            params["member"] = self.member.email
        return params


LABELS = {"since": "From", "until": "To"}


def _parse_moment(value: str, field: str, *, end: bool, tz: tzinfo = timezone.UTC) -> datetime:
    """A date (as ``until``, the whole day is included) or an ISO 8601 time, in ``tz`` if
    naive."""
    value = value.strip()
    try:
        day = parse_date(value)
        moment = None if day else parse_datetime(value)
    except ValueError:  # well formed but impossible, like 2026-02-30
        day = moment = None
    if day is None and moment is None:
        raise FilterError(
            f"Use a date (2026-11-01) or an ISO 8601 time for {field}.",
            field,
            console=f"Use a date for {LABELS[field]}, like 2026-11-01.",
        )
    if not 1 < (day or moment).year < 9999:
        # Room for the arithmetic that follows (the next day, the next hour, a default window).
        raise FilterError(
            f"{field} must be between the years 2 and 9998.",
            field,
            console=f"{LABELS[field]} must be between the years 2 and 9998.",
        )
    if day is not None:
        moment = datetime.combine(day + timedelta(days=1) if end else day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, tz)
    return moment


def local_midnight(day: date, tz: tzinfo) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), tz)


def preset_days(preset: str, tz: tzinfo, *, now: datetime | None = None) -> tuple[date, date]:
    """The first and last day (inclusive) a preset covers, in ``tz``."""
    today = (now or timezone.now()).astimezone(tz).date()
    if preset == "today":
        return today, today
    if preset == "yesterday":
        return today - timedelta(days=1), today - timedelta(days=1)
    if preset == "7d":
        return today - timedelta(days=6), today
    if preset == "mtd":
        return today.replace(day=1), today
    if preset == "last_month":
        last = today.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    raise FilterError(
        f"preset is one of {', '.join(PRESETS)}.",
        "preset",
        console=f"Choose one of the periods: {', '.join(PRESETS.values())}.",
    )


def period_from(params, tz: tzinfo, *, default_days: int | None = None):
    """(since, until, preset) from ``preset`` or ``since``/``until`` (dates or ISO times):
    ``until`` exclusive; None for an open end when there is no default."""
    if preset := params.get("preset"):
        first, last = preset_days(preset, tz)
        return local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz), preset
    until, since = params.get("until"), params.get("since")
    until_at = _parse_moment(until, "until", end=True, tz=tz) if until else None
    since_at = _parse_moment(since, "since", end=False, tz=tz) if since else None
    if default_days is not None:
        until_at = until_at or timezone.now()
        if since_at is None:
            first = until_at.astimezone(tz).date() - timedelta(days=default_days - 1)
            since_at = local_midnight(first, tz)
    if since_at and until_at and until_at <= since_at:
        raise _order_error()
    return since_at, until_at, ""


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def usage_filter_from(
    account: Account,
    params,
    *,
    default_group_by: str = "day",
    tz: tzinfo = timezone.UTC,
    group_bys: tuple[str, ...] = GROUP_BYS,
) -> UsageFilter:
    """Parse query parameters. Unknown keys of this account are 404; bad values FilterError.
    Dates and presets are read in ``tz``."""
    since_at, until_at, preset = period_from(params, tz, default_days=DEFAULT_DAYS)
    since_at = _floor_hour(since_at)
    until_at = _ceil_hour(until_at)
    if until_at <= since_at:
        raise _order_error()
    if until_at - since_at > timedelta(days=MAX_DAYS):
        raise FilterError(f"Ask for at most {MAX_DAYS} days at a time.", "since")
    group_by = params.get("group_by") or default_group_by
    if group_by not in group_bys:
        raise FilterError(f"group_by is one of {', '.join(group_bys)}.", "group_by")
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
    tag = ""
    if raw_tag := (params.get("tag") or "").strip():
        try:
            tag = tag_filter(raw_tag)
        except ApiError as error:
            raise FilterError(
                error.message, "tag", console="Write a tag as key:value, like team:search."
            ) from None
    project = None
    if project_id := params.get("project_id"):
        project = Project.objects.filter(account=account, public_id=project_id).first()
        if project is None:
            raise FilterError("No project with this id in your account.", "project_id")
    member = None
    if email := (params.get("member") or "").strip():
        # Whoever created a key of the account, a member still or not (as group_by=member).
        member = User.objects.filter(
            email__iexact=email, pk__in=ApiKey.objects.filter(account=account).values("created_by")
        ).first()
        if member is None:
            raise FilterError("No key of your account was created by this e-mail.", "member")
    return UsageFilter(
        since_at, until_at, group_by, api_key, model, family, tz, preset, tag, project, member
    )


def _rollups(flt: UsageFilter) -> QuerySet:
    """The rollup a report reads: per tag when it is filtered or grouped by tag (a call with
    several tags counts in each of their groups), else the hourly one."""
    if flt.tag or flt.group_by == "tag":
        rows = UsageTagRollup.objects.all()
        return rows.filter(tag=flt.tag) if flt.tag else rows
    return UsageRollup.objects.all()


def _tagged(tag: str) -> Q:
    """Usage rows carrying ``tag`` (their tags are sorted key=value joined by commas)."""
    return (
        Q(tags=tag)
        | Q(tags__startswith=f"{tag},")
        | Q(tags__endswith=f",{tag}")
        | Q(tags__contains=f",{tag},")
    )


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
    if flt.project:
        queryset = queryset.filter(project=flt.project)
    if flt.member:
        queryset = queryset.filter(api_key__created_by=flt.member)
    if flt.projects is not None:
        queryset = queryset.filter(project_id__in=flt.projects)
    return queryset


def _sums() -> dict:
    return {name: Sum(name) for name in SUMS}


@dataclass
class UsageReport:
    filter: UsageFilter
    buckets: list[dict] = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    # By a dimension (model, key, project, member, tag): the report's days and, per bucket, its
    # spend on each day, biggest first (what the usage page stacks over time).
    days: list[date] = field(default_factory=list)
    series: list[dict] = field(default_factory=list)


# What a dimension's buckets are: the value grouped on, and the names shown beside it.
DIMENSIONS = {
    "model": ("model__slug", {"label": "model__display_name"}),
    # last4 tells apart a deleted key and a live key of the same name
    "api_key": ("api_key__public_id", {"label": "api_key__name", "last4": "api_key__last4"}),
    "project": ("project__public_id", {"label": "project__name"}),  # the key's when it settled
    "member": ("api_key__created_by__email", {}),  # the key's creator
    "tag": ("tag", {}),
}


def usage_report(account: Account, flt: UsageFilter) -> UsageReport:
    """Buckets by day, hour, model, key, project, member or tag, and the totals, in one read of
    the hourly rollup (a second for the totals of a report by tag: a call with several tags
    counts in each of their groups, and once in the total)."""
    rows = _filtered(_rollups(flt), account, flt, "hour")
    if flt.group_by in PAIR_GROUP_BYS:
        return _pair_report(rows, flt)
    if flt.group_by in ("day", "hour"):
        bucket = TruncDay("hour", tzinfo=flt.tz) if flt.group_by == "day" else F("hour")
        result = list(rows.annotate(bucket=bucket).values("bucket").annotate(**_sums())
                      .order_by("bucket"))  # fmt: skip
        for row in result:
            row["bucket"] = row["bucket"].astimezone(flt.tz)
        buckets = [_sums_of(row) | _bucket_fields(row) for row in result]
        return UsageReport(flt, buckets, _added(buckets))
    return _dimension_report(account, rows, flt)


def _dimension_report(account: Account, rows: QuerySet, flt: UsageFilter) -> UsageReport:
    """By model, key, project, member or tag, biggest spend first: each bucket's sums and its
    spend per day, from one query grouped by day and bucket."""
    value, shown = DIMENSIONS[flt.group_by]
    grid = (
        rows.annotate(day=TruncDay("hour", tzinfo=flt.tz), bucket=F(value),
                      **{name: F(path) for name, path in shown.items()})
        .values("day", "bucket", *shown)
        .annotate(**_sums())
        .order_by()
    )  # fmt: skip
    first, last = flt.first_day, flt.last_day
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    merged: dict = {}
    for row in grid:
        if flt.group_by == "tag":  # stored key=value, named key:value in reports and filters
            row["bucket"] = row["bucket"].replace("=", ":", 1)
        key = (row["bucket"], *(row[name] for name in shown))
        if key not in merged:
            names = {name: row[name] for name in shown}
            merged[key] = {**dict.fromkeys(SUMS, 0), "bucket": row["bucket"], **names, "days": {}}
        bucket = merged[key]
        for name in SUMS:
            bucket[name] += row[name] or 0
        day = row["day"].astimezone(flt.tz).date()
        bucket["days"][day] = bucket["days"].get(day, 0) + (row["credits"] or 0)
    ordered = sorted(merged.values(), key=lambda b: (-b["credits"], b["bucket"] is None,
                                                     str(b["bucket"] or "")))  # fmt: skip
    buckets = [_sums_of(bucket) | _bucket_fields(bucket) for bucket in ordered]
    series = [
        {"name": bucket.get("label") or bucket["bucket"] or "None",
         "values": [bucket["days"].get(day, 0) for day in days], "total": bucket["credits"]}
        for bucket in ordered
    ]  # fmt: skip
    if flt.group_by == "tag" and not flt.tag:
        # The total is every call's once, tagged or not (tag groups may add up to more).
        totals = _filtered(UsageRollup.objects.all(), account, flt, "hour").aggregate(**_sums())
        totals = _sums_of(totals)
    else:
        totals = _added(buckets)
    return UsageReport(flt, buckets, totals, days, series)


def _sums_of(row: dict) -> dict:
    return {name: row.get(name) or 0 for name in SUMS}


def _added(buckets: list[dict]) -> dict:
    return {name: sum(bucket[name] for bucket in buckets) for name in SUMS}


def _pair_report(rows: QuerySet, flt: UsageFilter) -> UsageReport:
    """Every (key, model) pair with usage: keys by spend, each key's models by spend under it
    (``key_model``), or models then keys (``model_key``)."""
    result = list(
        rows.values("api_key__public_id", "api_key__name", "model__slug", "model__display_name")
        .annotate(**_sums())
        .order_by()
    )
    outer, inner = (
        ("api_key__public_id", "model__slug")
        if flt.group_by == "key_model"
        else ("model__slug", "api_key__public_id")
    )
    outer_totals: dict = {}
    for row in result:
        outer_totals[row[outer]] = outer_totals.get(row[outer], 0) + (row["credits"] or 0)
    result.sort(
        key=lambda row: (
            -outer_totals[row[outer]],
            str(row[outer]),
            -(row["credits"] or 0),
            str(row[inner]),
        )
    )
    buckets = [
        _sums_of(row)
        | {
            "bucket": f"{row['api_key__public_id'] or ''}/{row['model__slug']}",
            "api_key_id": row["api_key__public_id"],
            "key_name": row["api_key__name"],
            "model": row["model__slug"],
            "model_name": row["model__display_name"],
        }
        for row in result
    ]
    return UsageReport(flt, buckets, _added(buckets))


def _bucket_fields(row: dict) -> dict:
    bucket = row["bucket"]
    fields = {"bucket": bucket.isoformat() if isinstance(bucket, datetime) else bucket}
    if "label" in row:
        fields["label"] = row["label"]
    if row.get("last4"):
        fields["last4"] = row["last4"]
    return fields


def key_label(name: str, last4: str | None) -> str:
    """A key's name with the end of its masked secret: a deleted key and a live key may share
    a name (names are unique only among keys not deleted)."""
    return f"{name} (…{last4})" if last4 else name


def usage_records(account: Account, flt: UsageFilter) -> QuerySet[UsageRecord]:
    """Single requests in the filter, newest first."""
    records = _filtered(
        UsageRecord.objects.select_related("api_key", "model"), account, flt, "created_at"
    )
    if flt.tag:
        records = records.filter(_tagged(flt.tag))
    return records.order_by("-created_at", "-id")


def usage_record_count(account: Account, flt: UsageFilter) -> int:
    """How many requests the filter covers, from the rollup (a COUNT over the log is slow)."""
    return (
        _filtered(
            _rollups(flt) if flt.tag else UsageRollup.objects.all(), account, flt, "hour"
        ).aggregate(calls=Sum("calls"))["calls"]
        or 0
    )


# --- Spend summaries -------------------------------------------------------------------------


def spend_since(account: Account, since: datetime, *, api_key=None) -> int:
    rows = UsageRollup.objects.filter(account=account, hour__gte=_floor_hour(since))
    if api_key is not None:
        rows = rows.filter(api_key=api_key)
    return rows.aggregate(total=Sum("credits"))["total"] or 0


def spend_summary(account: Account, *, projects: frozenset[int] | None = None) -> dict:
    """Spend today (in the account's time zone), over the last 7 and 30 days (of ``projects``
    only, when given)."""
    today = local_midnight(timezone.now().astimezone(account.zone).date(), account.zone)
    rows = UsageRollup.objects.filter(account=account, hour__gte=today - timedelta(days=29))
    if projects is not None:
        rows = rows.filter(project_id__in=projects)
    totals = rows.aggregate(
        today=Sum("credits", filter=_since(today)),
        week=Sum("credits", filter=_since(today - timedelta(days=6))),
        month=Sum("credits"),
    )
    return {name: value or 0 for name, value in totals.items()}


RUNWAY_DAYS = 7


def runway_days(account: Account, available: int) -> int | None:
    """How many days ``available`` lasts at the last seven days' average spend (whole days,
    rounded down); None when nothing was spent."""
    spent = spend_since(account, timezone.now() - timedelta(days=RUNWAY_DAYS))
    if spent <= 0:
        return None
    return max(available, 0) * RUNWAY_DAYS // spent


def _since(moment):
    return Q(hour__gte=moment)


def daily_spend_by_key(
    account: Account, days: int = 30, *, projects: frozenset[int] | None = None
) -> tuple[list[date], list[dict]]:
    """For the dashboard chart: the last ``days`` days and, per key, its spend on each day (the
    keys of ``projects`` only, when given)."""
    tz = account.zone
    today = timezone.now().astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    rows = UsageRollup.objects.filter(account=account, hour__gte=local_midnight(first, tz))
    if projects is not None:
        rows = rows.filter(project_id__in=projects)
    rows = (
        rows.annotate(day=TruncDay("hour", tzinfo=tz))
        .values("day", "api_key__public_id", "api_key__name", "api_key__last4")
        .annotate(credits=Sum("credits"))
    )
    days_list = [first + timedelta(days=i) for i in range(days)]
    series: dict[str, dict] = {}
    for row in rows:
        key = row["api_key__public_id"] or "—"
        entry = series.setdefault(
            key,
            {
                "key": key,
                "name": key_label(row["api_key__name"], row["api_key__last4"])
                if row["api_key__name"]
                else "Deleted key",
                "days": {},
            },
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


def ledger_filter_from(params, *, tz: tzinfo = timezone.UTC) -> dict:
    """kind, since and until from query parameters (a preset, or dates or ISO times read in
    ``tz``; until is inclusive), as ``ledger_for_account`` takes them."""
    result = {"kind": params.get("kind") or ""}
    if result["kind"] and result["kind"] not in LedgerKind.values:
        raise FilterError(f"kind is one of {', '.join(LedgerKind.values)}.", "kind")
    since, until, _ = period_from(params, tz)
    if since:
        result["since"] = since
    if until:
        result["until"] = until
    return result


@dataclass(frozen=True)
class ChargeLine:
    """What a charge paid for: one key and model, with how many calls and credits."""

    api_key_id: str | None  # the key's public id, None for a call without a key
    key_name: str
    key_deleted: bool
    model: str  # the model's slug
    model_name: str
    calls: int
    credits: int


@dataclass(frozen=True)
class ChargeSource:
    """The calls behind one ledger charge: a request (``request_id``), a task (``task_id``), or a
    settlement batch of many requests (``calls`` > 1, ``request_id`` empty)."""

    lines: tuple[ChargeLine, ...]
    calls: int
    request_id: str = ""
    task_id: str = ""
    day: date | None = None  # the first call's day, in the report's zone (for the usage link)

    @property
    def single(self) -> ChargeLine | None:
        return self.lines[0] if len(self.lines) == 1 else None


def charge_sources(account: Account, references, *, tz: tzinfo = timezone.UTC) -> dict:
    """For ledger charges' references: the usage behind each, by reference. A charge's reference
    is its request's id, its task's id, or the settlement batch that charged many calls at once
    (one query, however many entries)."""
    references = {ref for ref in references if ref}
    if not references:
        return {}
    rows = (
        UsageRecord.objects.filter(account=account)
        .filter(Q(request_id__in=references) | Q(batch__in=references))
        .values(
            "request_id",
            "batch",
            "created_at",
            "credits",
            "api_key__public_id",
            "api_key__name",
            "api_key__deleted_at",
            "model__slug",
            "model__display_name",
        )
    )
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        reference = row["batch"] if row["batch"] in references else row["request_id"]
        grouped.setdefault(reference, []).append(row)
    sources = {}
    for reference, records in grouped.items():
        lines: dict[tuple, list] = {}
        for row in records:
            pair = (row["api_key__public_id"], row["model__slug"])
            line = lines.setdefault(pair, [row, 0, 0])
            line[1] += 1
            line[2] += row["credits"]
        ordered = sorted(lines.values(), key=lambda line: (-line[2], str(line[0]["model__slug"])))
        single = len(records) == 1 and not records[0]["batch"]
        request_id = records[0]["request_id"] if single else ""
        sources[reference] = ChargeSource(
            lines=tuple(
                ChargeLine(
                    api_key_id=row["api_key__public_id"],
                    key_name=row["api_key__name"] or "",
                    key_deleted=row["api_key__deleted_at"] is not None,
                    model=row["model__slug"],
                    model_name=row["model__display_name"],
                    calls=calls,
                    credits=credits,
                )
                for row, calls, credits in ordered
            ),
            calls=len(records),
            request_id="" if request_id.startswith("task_") else request_id,
            task_id=request_id if request_id.startswith("task_") else "",
            day=min(row["created_at"] for row in records).astimezone(tz).date(),
        )
    return sources
