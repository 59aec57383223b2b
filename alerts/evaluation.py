"""What each kind of rule watches, read from the books: the conditions an evaluation checks.

A condition names its *subject* (what is watched, with the limit it is watched against, so a
changed threshold, a raised quota or a new month is a new subject, armed afresh) and whether it
is crossed now. ``alerts.services.account_evaluate`` fires the crossed ones whose state is armed
and re-arms the cleared ones. Every figure is charged spend, read in a few queries per account
and never on the data plane's path: calls still running count once they settle.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import cached_property

from django.db.models import Max, Q, Sum

from accounts.models import Account, Project, zone_named
from alerts.models import AlertRule, RuleKind
from billing.budgets import LIFETIME, THRESHOLDS, budget_spend, spent
from billing.limits import WINDOWS
from billing.models import Budget, KeySpend, KeyTotal, UsageRollup, Wallet
from core.delivery import DeliveryStatus
from core.money import credits_json, format_credits
from generation.models import CallbackDelivery
from keys.models import ApiKey, KeyStatus

# A key is watched at these shares of each of its limits (percent), the highest crossed first.
KEY_LEVELS = (100, 80)
# A budget, hard or soft, at these (billing/budgets.py).
BUDGET_LEVELS = tuple(sorted(THRESHOLDS, reverse=True))
LIMIT_LABELS = {"quota": "quota", "5h": "5-hour cap", "1d": "daily cap", "7d": "7-day cap"}


@dataclass(frozen=True)
class Condition:
    subject: str
    crossed: bool
    title: str
    level: str
    data: dict = field(default_factory=dict)
    # Conditions of one group (a key's limit) fire one at a time: only the highest level that
    # is crossed fires; lower levels crossed with it are spent without an alert of their own.
    group: str = ""
    # Balance rules re-arm on a top-up (alerts.services.balance_rules_rearm), not when a hold
    # ends: a wallet hovering at its threshold as holds come and go would alert on every call.
    rearm_on_clear: bool = True


def month_start(now: datetime, tz: tzinfo = UTC) -> datetime:
    """The first moment of the calendar month ``now`` is in, in the account's time zone ``tz``
    (its reports' months are those of that zone too)."""
    local = now.astimezone(tz)
    return datetime(local.year, local.month, 1, tzinfo=tz)


class Figures:
    """An account's figures, each read once and only when a rule needs it."""

    def __init__(self, account_id: int, now: datetime):
        self.account_id = account_id
        self.now = now

    @cached_property
    def wallet(self) -> tuple[int, int]:
        return Wallet.objects.filter(account_id=self.account_id).values_list(
            "balance", "held"
        ).first() or (0, 0)

    @cached_property
    def zone(self) -> tzinfo:
        name = Account.objects.filter(pk=self.account_id).values_list("time_zone", flat=True)
        return zone_named(name.first() or "UTC")

    @property
    def month(self) -> str:
        """This month in the account's time zone, as 2026-11."""
        return f"{self.now.astimezone(self.zone):%Y-%m}"

    @cached_property
    def month_spend(self) -> int:
        return (
            UsageRollup.objects.filter(
                account_id=self.account_id, hour__gte=month_start(self.now, self.zone)
            ).aggregate(total=Sum("credits"))["total"]
            or 0
        )

    @cached_property
    def limited_keys(self) -> list[ApiKey]:
        limited = Q(quota__isnull=False)
        for _, _, attr in WINDOWS:
            limited |= Q(**{f"{attr}__isnull": False})
        return list(
            ApiKey.objects.filter(account_id=self.account_id, deleted_at__isnull=True)
            .exclude(status=KeyStatus.REVOKED)
            .filter(limited)
            .order_by("pk")
        )

    @cached_property
    def key_spend(self) -> dict[int, dict[str, int]]:
        """Per key: its lifetime charges ("quota") and its charges in each capped window."""
        keys = [key.pk for key in self.limited_keys]
        spend: dict[int, dict[str, int]] = {pk: {} for pk in keys}
        if not keys:
            return spend
        for pk, credits in KeyTotal.objects.filter(api_key_id__in=keys).values_list(
            "api_key_id", "credits"
        ):
            spend[pk]["quota"] = credits
        longest = max(span for _, span, _ in WINDOWS)
        sums = {
            name: Sum("credits", filter=Q(bucket__gte=self.now - span)) for name, span, _ in WINDOWS
        }
        rows = (
            KeySpend.objects.filter(api_key_id__in=keys, bucket__gte=self.now - longest)
            .values("api_key_id")
            .annotate(**sums)
        )
        for row in rows:
            spend[row["api_key_id"]].update({name: row[name] or 0 for name, _, _ in WINDOWS})
        return spend

    @cached_property
    def budgets(self) -> list["WatchedBudget"]:
        """Every amount of every budget (the account's, members', projects'), with its spend."""
        zone, watched = str(self.zone), []

        def watch(ident, who, scope, member, hard, monthly, lifetime, spend):
            for period, amount in ((self.month, monthly), (LIFETIME, lifetime)):
                if amount:
                    watched.append(WatchedBudget(ident, who, scope, member, hard, period,
                                                 amount, spend(period)))  # fmt: skip

        for budget in Budget.objects.filter(account_id=self.account_id).select_related("member"):
            member = budget.member.email if budget.member else None
            who = f"{member}'s keys" if member else "the account"
            watch(f"budget:{budget.pk}", who, budget.scope, member, budget.hard, budget.monthly,
                  budget.lifetime, lambda p, b=budget: budget_spend(b, p, zone=zone))  # fmt: skip
        projects = Project.objects.filter(account_id=self.account_id, deleted_at__isnull=True)
        for project in projects.filter(Q(monthly_budget__isnull=False) | Q(budget__isnull=False)):
            watch(f"project:{project.pk}", f"the project {project.name}", "project", None,
                  project.budget_hard, project.monthly_budget, project.budget,
                  lambda p, pk=project.pk: spent(f"project:{pk}", p, zone=zone))  # fmt: skip
        return watched

    @cached_property
    def callback_streak(self) -> tuple[int, int]:
        """(the last delivered callback's id, how many deliveries failed since): a delivery
        counts as failed from its first failed attempt, and any delivered one ends the streak."""
        deliveries = CallbackDelivery.objects.filter(task__account_id=self.account_id)
        last_ok = (
            deliveries.filter(status=DeliveryStatus.DELIVERED).aggregate(last=Max("pk"))["last"]
            or 0
        )
        failed = (
            deliveries.filter(pk__gt=last_ok, attempts__gte=1)
            .exclude(status=DeliveryStatus.DELIVERED)
            .count()
        )
        return last_ok, failed


def _credits(micros: int) -> str:
    return f"{format_credits(micros)} credits"


def balance_conditions(rule: AlertRule, figures: Figures) -> list[Condition]:
    balance, held = figures.wallet
    available = balance - held
    return [
        Condition(
            subject=f"balance:{rule.threshold}",
            crossed=available < rule.threshold,
            title=f"Available balance below {_credits(rule.threshold)}",
            level=f"below {_credits(rule.threshold)}",
            data={
                "threshold": credits_json(rule.threshold),
                "available": credits_json(available),
                "balance": credits_json(balance),
            },
            rearm_on_clear=False,
        )
    ]


def monthly_spend_conditions(rule: AlertRule, figures: Figures) -> list[Condition]:
    month = figures.month
    spent = figures.month_spend
    return [
        Condition(
            subject=f"month:{month}:{rule.threshold}",
            crossed=spent >= rule.threshold,
            title=f"Spend this month reached {_credits(rule.threshold)}",
            level=f"{_credits(rule.threshold)} in {month}",
            data={
                "threshold": credits_json(rule.threshold),
                "month": month,
                "spent": credits_json(spent),
            },
        )
    ]


def _key_limits(key: ApiKey) -> list[tuple[str, int]]:
    limits = [("quota", key.quota)] if key.quota else []
    limits += [(name, getattr(key, attr)) for name, _, attr in WINDOWS if getattr(key, attr)]
    return limits


def key_quota_conditions(rule: AlertRule, figures: Figures) -> list[Condition]:
    conditions = []
    for key in figures.limited_keys:
        if rule.api_key_id is not None and key.pk != rule.api_key_id:
            continue
        spend = figures.key_spend.get(key.pk, {})
        for limit, cap in _key_limits(key):
            used = spend.get(limit, 0)
            label = LIMIT_LABELS[limit]
            for percent in KEY_LEVELS:
                conditions.append(
                    Condition(
                        subject=f"key:{key.public_id}:{limit}:{cap}:{percent}",
                        crossed=used * 100 >= cap * percent,
                        title=f"Key {key.name} at {percent}% of its {label}",
                        level=f"{percent}% of the {label}",
                        data={
                            # The key's public id and name only: never its secret.
                            "key": {"id": key.public_id, "name": key.name},
                            "limit": limit,
                            "percent": percent,
                            "cap": credits_json(cap),
                            "used": credits_json(used),
                        },
                        group=f"key:{key.public_id}:{limit}:{cap}",
                    )
                )
    return conditions


def callback_failure_conditions(rule: AlertRule, figures: Figures) -> list[Condition]:
    last_ok, failed = figures.callback_streak
    return [
        Condition(
            # Each streak is its own subject: a delivered callback starts the next one.
            subject=f"callbacks:{rule.streak}:after:{last_ok}",
            crossed=failed >= rule.streak,
            title=f"{failed} task callbacks in a row failed",
            level=f"{rule.streak} failed in a row",
            data={"streak": rule.streak, "failed": failed},
        )
    ]


@dataclass(frozen=True)
class WatchedBudget:
    ident: str  # budget:<pk> or project:<pk>
    who: str
    scope: str  # account, member, project
    member: str | None
    hard: bool
    period: str  # YYYY-MM or life
    amount: int
    spent: int


def budget_conditions(rule: AlertRule, figures: Figures) -> list[Condition]:
    conditions = []
    for watched in figures.budgets:
        period, amount, spent_ = watched.period, watched.amount, watched.spent
        span = "lifetime" if period == LIFETIME else f"{period} monthly"
        kind = "hard" if watched.hard else "soft"
        for percent in BUDGET_LEVELS:
            conditions.append(
                Condition(
                    subject=f"{watched.ident}:{period}:{amount}:{percent}",
                    crossed=spent_ * 100 >= amount * percent,
                    title=f"Spend of {watched.who} at {percent}% of its {span} budget",
                    level=f"{percent}% of {_credits(amount)}",
                    data={
                        "budget": {
                            "scope": watched.scope,
                            "member": watched.member,
                            "kind": kind,
                        },
                        "period": period,
                        "percent": percent,
                        "amount": credits_json(amount),
                        "spent": credits_json(spent_),
                    },
                    group=f"{watched.ident}:{period}:{amount}",
                )
            )
    return conditions


CONDITIONS = {
    RuleKind.BALANCE_BELOW: balance_conditions,
    RuleKind.MONTHLY_SPEND: monthly_spend_conditions,
    RuleKind.KEY_QUOTA: key_quota_conditions,
    RuleKind.CALLBACK_FAILURES: callback_failure_conditions,
    RuleKind.BUDGET: budget_conditions,
}


def rule_conditions(rule: AlertRule, figures: Figures) -> list[Condition]:
    return CONDITIONS[rule.kind](rule, figures)
