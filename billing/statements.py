"""Monthly statements (issue 16, item 5): what went into and out of an account's wallet in one
calendar month of the account's time zone, read from the ledger so it reconciles to the
micro-credit: opening balance + every line = closing balance.

Charges are itemised by model from the usage rows their ledger entries charged: a settlement
batch's entry charges the rows that name the batch, a call settled on its own hold charges the row
of its request id. A charge no usage row explains (none should exist; ``wallet_problems`` says
so) is shown as "other charges", so the statement still adds up."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Count, Min, Q, Sum
from django.utils import timezone

from accounts.models import Account, Project
from billing.models import LedgerEntry, LedgerKind, UsageRecord

# The statement's money lines, in the order it shows them; holds and releases move no balance.
LINES = (
    (LedgerKind.TOPUP, "Top-ups"),
    (LedgerKind.REDEEM, "Redeemed codes"),
    (LedgerKind.ADMIN_CREDIT, "Credits by ByteSpike"),
    (LedgerKind.ADMIN_DEBIT, "Debits by ByteSpike"),
    (LedgerKind.CHARGE, "Charges"),
    (LedgerKind.REFUND, "Refunds"),
)
# Listed one by one: money in, and money taken out by hand.
ITEMISED = (
    LedgerKind.TOPUP,
    LedgerKind.REDEEM,
    LedgerKind.ADMIN_CREDIT,
    LedgerKind.ADMIN_DEBIT,
    LedgerKind.REFUND,
)


class MonthError(ValueError):
    """A month that is not ``YYYY-MM``, or has no statement yet."""


@dataclass(frozen=True)
class ModelCharges:
    model: str  # slug
    name: str
    calls: int
    credits: int


@dataclass(frozen=True)
class ProjectCharges:
    project_id: str  # its public id ("" for calls without a project)
    name: str
    calls: int
    credits: int


@dataclass
class Statement:
    account: Account
    month: date  # its first day
    zone: str
    start: datetime
    end: datetime
    opening: int
    closing: int
    lines: list[tuple[str, str, int]]  # (kind, label, amount): every kind, zero or not
    entries: list[LedgerEntry]  # the itemised ones, oldest first
    by_model: list[ModelCharges] = field(default_factory=list)
    by_project: list[ProjectCharges] = field(default_factory=list)
    other_charges: int = 0
    complete: bool = True  # False for the month in progress

    @property
    def label(self) -> str:
        return self.month.strftime("%B %Y")

    @property
    def last_day(self) -> date:
        """The month's last day (``end`` is the next month's first instant)."""
        return (self.end - timedelta(days=1)).date()

    @property
    def slug(self) -> str:
        return self.month.strftime("%Y-%m")

    @property
    def charged(self) -> int:
        """The month's charges as a positive amount."""
        return -next(amount for kind, _, amount in self.lines if kind == LedgerKind.CHARGE)


def parse_month(value: str) -> date:
    try:
        year, month = (int(part) for part in value.split("-"))
        return date(year, month, 1)
    except ValueError:
        raise MonthError("A month is written YYYY-MM, such as 2026-11.") from None


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def previous_month(month: date) -> date:
    return date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)


def month_bounds(month: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's, in ``zone``."""
    start = datetime(month.year, month.month, 1, tzinfo=zone)
    following = _next_month(month)
    return start, datetime(following.year, following.month, 1, tzinfo=zone)


def current_month(account: Account, now: datetime | None = None) -> date:
    local = (now or timezone.now()).astimezone(account.zone)
    return date(local.year, local.month, 1)


def statement_months(account: Account) -> list[date]:
    """The months with a statement, newest first: from the account's first ledger entry to now."""
    zone = account.zone
    first = LedgerEntry.objects.filter(account=account).aggregate(first=Min("created_at"))["first"]
    latest = current_month(account)
    if first is None:
        return [latest]
    local = first.astimezone(zone)
    month, months = date(local.year, local.month, 1), []
    while month <= latest:
        months.append(month)
        month = _next_month(month)
    return months[::-1]


def statement_for(account: Account, month: date) -> Statement:
    zone = account.zone
    start, end = month_bounds(month, zone)
    if month > current_month(account):
        raise MonthError(f"{month:%B %Y} has not started yet.")
    ledger = LedgerEntry.objects.filter(account=account)
    opening = ledger.filter(created_at__lt=start).aggregate(total=Sum("amount"))["total"] or 0
    in_month = ledger.filter(created_at__gte=start, created_at__lt=end)
    sums = dict(in_month.values_list("kind").annotate(total=Sum("amount")).order_by())
    lines = [(kind, label, sums.get(kind) or 0) for kind, label in LINES]
    closing = opening + sum(amount for _, _, amount in lines)
    entries = list(in_month.filter(kind__in=ITEMISED).order_by("created_at", "id"))
    statement = Statement(
        account=account, month=month, zone=str(zone), start=start, end=end, opening=opening,
        closing=closing, lines=lines, entries=entries, complete=end <= timezone.now(),
    )  # fmt: skip
    charged = _charged_rows(account, in_month)
    statement.by_model = _by_model(charged)
    statement.by_project = _by_project(charged)
    explained = sum(row.credits for row in statement.by_model)
    statement.other_charges = statement.charged - explained
    return statement


def _charged_rows(account: Account, in_month):
    """The usage rows the month's charge entries charged."""
    charges = in_month.filter(kind=LedgerKind.CHARGE).values("reference")
    return UsageRecord.objects.filter(account=account).filter(
        Q(batch__in=charges) | Q(batch="", request_id__in=charges)
    )


def _by_model(rows) -> list[ModelCharges]:
    grouped = (
        rows.values("model__slug", "model__display_name")
        .annotate(calls=Count("id"), credits=Sum("credits"))
        .order_by("-credits", "model__slug")
    )
    return [
        ModelCharges(row["model__slug"], row["model__display_name"], row["calls"], row["credits"])
        for row in grouped
    ]


def _by_project(rows) -> list[ProjectCharges]:
    grouped = (
        rows.values("project__public_id", "project__name")
        .annotate(calls=Count("id"), credits=Sum("credits"))
        .order_by("-credits", "project__name")
    )
    return [
        ProjectCharges(row["project__public_id"] or "", row["project__name"] or "No project",
                       row["calls"], row["credits"])
        for row in grouped
    ]  # fmt: skip


@dataclass
class ProjectStatement:
    """A project's share of an account's month: the charges its keys' calls made (where the key
    was when the call settled), by model and by key. Summed over the account's projects, they
    are the account statement's charges."""

    project: Project
    statement: Statement  # the account's, for its period
    by_model: list[ModelCharges]
    by_key: list[ModelCharges]  # model: the key's id, name: its name

    @property
    def charged(self) -> int:
        return sum(row.credits for row in self.by_model)


def project_statement_for(project: Project, month: date) -> ProjectStatement:
    statement = statement_for(project.account, month)
    in_month = LedgerEntry.objects.filter(
        account=project.account, created_at__gte=statement.start, created_at__lt=statement.end
    )
    rows = _charged_rows(project.account, in_month).filter(project=project)
    keys = (
        rows.values("api_key__public_id", "api_key__name")
        .annotate(calls=Count("id"), credits=Sum("credits"))
        .order_by("-credits", "api_key__name")
    )
    by_key = [
        ModelCharges(row["api_key__public_id"] or "", row["api_key__name"] or "No key",
                     row["calls"], row["credits"])
        for row in keys
    ]  # fmt: skip
    return ProjectStatement(project, statement, _by_model(rows), by_key)
