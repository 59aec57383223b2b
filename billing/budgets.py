"""Budgets (issue 16, item 2): spending limits on an account and on a member's keys, monthly (a
calendar month of the account's time zone) and lifetime, hard (calls refused past them, 402
``budget_exceeded``) or soft (alerts only), alerting at 50, 80 and 100%.

A hard budget is one more limit the metering engine admits a call against, in the same atomic
step as the key's limits and the wallet (billing/metering/counters.py: its spend in its period is
a counter, seeded from the usage rows). The engine reads an account's budgets at most once a
second per process (``RULES_SECONDS``), so a change reaches every process within a second: a
budget set below what is already spent refuses the next call, not the one in flight.

Who a member's budget covers: the calls made with the keys that member created.
"""

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import Project
from billing.metering.limits import BudgetLimit
from billing.models import Budget, BudgetScope, Hold, HoldStatus, UsageRecord
from billing.statements import month_bounds, parse_month

RULES_SECONDS = 1.0
LIFETIME = "life"
THRESHOLDS = (50, 80, 100)


@dataclass(frozen=True)
class BudgetRule:
    """A hard budget as the engine keeps it for an account's calls."""

    scope: str  # account:<account id>, member:<account id>:<user id> or project:<project id>
    member_id: int | None
    monthly: int | None
    lifetime: int | None
    label: str  # "the account's", "the budget of alice@acme.test's keys"
    project_id: int | None = None
    version: str = ""  # when it was set (BudgetLimit.version)


def scope_of(budget: Budget) -> str:
    if budget.scope == BudgetScope.MEMBER:
        return f"member:{budget.account_id}:{budget.member_id}"
    return f"account:{budget.account_id}"


def _label(budget: Budget) -> str:
    if budget.scope == BudgetScope.MEMBER:
        return f"the budget of {budget.member.email}'s keys"
    return "the account's budget"


def period_of(moment: datetime, zone: ZoneInfo) -> tuple[str, datetime, datetime]:
    """The calendar month ``moment`` is in, in ``zone``: its name, start and end."""
    local = moment.astimezone(zone)
    start, end = month_bounds(date(local.year, local.month, 1), zone)
    return f"{local.year:04d}-{local.month:02d}", start, end


def rules_for_account(account_id: int) -> tuple[tuple[BudgetRule, ...], str]:
    """The account's hard budgets and its time zone (one query; run in a thread)."""
    from accounts.models import Account

    account = Account.objects.get(pk=account_id)
    budgets = Budget.objects.filter(account_id=account_id, hard=True).select_related("member")
    rules = tuple(
        BudgetRule(scope_of(b), b.member_id, b.monthly, b.lifetime, _label(b),
                   version=_version(b.updated_at))
        for b in budgets
        if b.monthly or b.lifetime
    )  # fmt: skip
    # A project's budgets are set on the project, hard or soft for both its amounts.
    projects = Project.objects.filter(
        account_id=account_id, deleted_at__isnull=True, budget_hard=True
    ).filter(Q(monthly_budget__isnull=False) | Q(budget__isnull=False))
    rules += tuple(
        BudgetRule(f"project:{p.pk}", None, p.monthly_budget, p.budget,
                   f"the budget of the project {p.name}", project_id=p.pk,
                   version=_version(p.budget_set_at))
        for p in projects
    )  # fmt: skip
    return rules, str(account.zone)


def _version(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1_000_000))


def limits_for(rules, zone: str, *, member_id: int | None, project_id: int | None,
               now: datetime) -> tuple:  # fmt: skip
    """The ``BudgetLimit``s a call with a key of ``project_id`` created by ``member_id`` counts
    against."""
    limits = []
    month, _, end = period_of(now, ZoneInfo(zone))
    for rule in rules:
        if rule.member_id is not None and rule.member_id != member_id:
            continue
        if rule.project_id is not None and rule.project_id != project_id:
            continue
        if rule.monthly:
            label = rule.label.replace("budget", "monthly budget", 1)
            reset = int(end.timestamp())
            limits.append(
                BudgetLimit(rule.scope, month, rule.monthly, label, reset, zone, rule.version)
            )
        if rule.lifetime:
            label = rule.label.replace("budget", "lifetime budget", 1)
            limits.append(
                BudgetLimit(rule.scope, LIFETIME, rule.lifetime, label, 0, zone, rule.version)
            )
    return tuple(limits)


def _scope_filter(scope: str, *, holds: bool = False) -> Q:
    """The usage rows (or, ``holds``, the holds) of ``scope``. A usage row records its project
    (where the key was when the call settled); a hold only its key."""
    kind, *ids = scope.split(":")
    if kind == "member":
        return Q(account_id=int(ids[0]), api_key__created_by_id=int(ids[1]))
    if kind == "project":
        return Q(api_key__project_id=int(ids[0])) if holds else Q(project_id=int(ids[0]))
    return Q(account_id=int(ids[0]))


def spent(scope: str, period: str, *, zone: str = "UTC") -> int:
    """What ``scope`` was charged in ``period``, with the tasks still running counted as spent
    (as the key counters count them): the counter's seed, and the check while Redis is down."""
    usage = UsageRecord.objects.filter(_scope_filter(scope))
    if period != LIFETIME:
        start, end = month_bounds(parse_month(period), ZoneInfo(zone))
        usage = usage.filter(created_at__gte=start, created_at__lt=end)
    charged = usage.aggregate(total=Sum("credits"))["total"] or 0
    return charged + _held(scope, kinds=("task",))


def budget_spend(budget: Budget, period: str, *, zone: str) -> int:
    """What a budget's scope was charged in ``period`` (alerts read it)."""
    return spent(scope_of(budget), period, zone=zone)


def _held(scope: str, *, kinds=None) -> int:
    holds = Hold.objects.filter(_scope_filter(scope, holds=True), status=HoldStatus.OPEN)
    if kinds:
        holds = holds.filter(kind__in=kinds)
    return holds.aggregate(total=Sum("amount"))["total"] or 0


def budgets_check(budgets, *, pending: int) -> None:
    """Raise the 402 of the first budget ``pending`` more would go over, counting every open
    hold in its scope: how calls are admitted while the counters (Redis) cannot be reached. Run
    under the wallet's lock (``hold_place``), which every hold of the account takes."""
    from billing.metering.limits import Headroom, refusal

    for budget in budgets:
        used = spent(budget.scope, budget.period, zone=budget.zone)
        used += _held(budget.scope, kinds=("request",))
        left = budget.limit - used
        if left - pending < 0:
            raise refusal(Headroom("budget", budget.limit, left, budget.reset, budget.label), 0)


def budget_set(*, account, scope: str, member=None, monthly: int | None, lifetime: int | None,
               hard: bool, actor, actor_label: str = "") -> Budget:  # fmt: skip
    """Set (or, with neither amount, remove) the account's or a member's budget."""
    from accounts.services import audit_record

    lookup = {"account": account, "scope": scope, "member": member}
    if not monthly and not lifetime:
        Budget.objects.filter(**lookup).delete()
        budget = Budget(**lookup)
    else:
        budget, _ = Budget.objects.update_or_create(
            **lookup,
            defaults={"monthly": monthly or None, "lifetime": lifetime or None, "hard": hard,
                      "updated_at": timezone.now()},
        )  # fmt: skip
    from billing.metering import meter

    meter.budgets_changed(account.pk)  # this process at once; the others within RULES_SECONDS
    audit_record(account=account, actor=actor, actor_label=actor_label, action="budget.set",
                 target=f"{scope}{f' {member.email}' if member else ''}")  # fmt: skip
    return budget


@dataclass(frozen=True)
class BudgetStatus:
    """A budget with what its scope spent this month and ever (a project's budgets are on the
    project: ``budget`` is then an unsaved Budget holding its amounts)."""

    budget: Budget
    month: str
    month_spent: int
    lifetime_spent: int
    project: Project | None = None

    @property
    def month_share(self) -> int | None:
        return _share(self.month_spent, self.budget.monthly)

    @property
    def lifetime_share(self) -> int | None:
        return _share(self.lifetime_spent, self.budget.lifetime)


def _share(spent_: int, amount: int | None) -> int | None:
    return None if not amount else min(spent_ * 100 // amount, 999)


def budgets_for_account(account, *, now: datetime | None = None) -> list[BudgetStatus]:
    """The account's budgets (its own first, then its members' by e-mail) and their spend."""
    zone = str(account.zone)
    month, _, _ = period_of(now or timezone.now(), account.zone)
    budgets = Budget.objects.filter(account=account).select_related("member")
    ordered = sorted(
        budgets, key=lambda b: (b.scope != BudgetScope.ACCOUNT, b.member and b.member.email)
    )
    return [
        BudgetStatus(
            b, month, budget_spend(b, month, zone=zone), budget_spend(b, LIFETIME, zone=zone)
        )
        for b in ordered
    ]


def project_budgets_for_account(account, *, projects: frozenset[int] | None = None,
                                now: datetime | None = None) -> list[BudgetStatus]:  # fmt: skip
    """The budgets of the account's projects (of ``projects`` only, when given) and their spend,
    by project name."""
    zone = str(account.zone)
    month, _, _ = period_of(now or timezone.now(), account.zone)
    rows = Project.objects.filter(account=account, deleted_at__isnull=True).filter(
        Q(monthly_budget__isnull=False) | Q(budget__isnull=False)
    )
    if projects is not None:
        rows = rows.filter(pk__in=projects)
    statuses = []
    for project in rows.order_by("name"):
        amounts = Budget(monthly=project.monthly_budget, lifetime=project.budget,
                         hard=project.budget_hard)  # fmt: skip
        scope = f"project:{project.pk}"
        statuses.append(BudgetStatus(amounts, month, spent(scope, month, zone=zone),
                                     spent(scope, LIFETIME, zone=zone), project))  # fmt: skip
    return statuses
