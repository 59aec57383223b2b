"""Management API for budgets (issue 16, item 2): the account's and each member's, monthly and
lifetime, hard or soft, with what each scope spent (billing/budgets.py). The list has the
projects' budgets too; those are set on the project (/api/v1/projects)."""

from typing import Literal

from django.http import Http404
from ninja import Field, Router, Schema, Status
from pydantic import ConfigDict

from accounts.models import Membership
from billing.budgets import (
    BudgetStatus,
    budget_set,
    budgets_for_account,
    project_budgets_for_account,
)
from billing.models import BudgetScope
from core.api import CreditsOut, credits_in
from core.money import credits_json

router = Router(tags=["budgets"])
Credits = credits_in(allow_zero=False)


class BudgetIn(Schema):
    model_config = ConfigDict(extra="forbid")

    monthly: Credits | None = Field(
        None, description="Credits per calendar month of the account's time zone; null: none."
    )
    lifetime: Credits | None = Field(None, description="Credits ever; null: none.")
    hard: bool = Field(
        True,
        description="true: calls past it are refused (402 budget_exceeded); false: alerts only.",
    )


class BudgetOut(Schema):
    scope: Literal["account", "member", "project"]
    member_id: str | None = Field(description="The member's id (`mem_...`) for a member budget.")
    project_id: str | None = Field(
        None, description="The project's id (`proj_...`) for a project budget, set on the project."
    )
    member_email: str | None
    monthly: CreditsOut | None
    lifetime: CreditsOut | None
    hard: bool
    month: str = Field(description="The month `month_spent` is of, as 2026-12.")
    month_spent: CreditsOut
    lifetime_spent: CreditsOut


class BudgetList(Schema):
    items: list[BudgetOut]


def _json(status: BudgetStatus, members: dict[int, Membership]) -> dict:
    budget = status.budget
    membership = members.get(budget.member_id) if budget.member_id else None
    return {
        "scope": "project" if status.project else budget.scope,
        "member_id": membership.public_id if membership else None,
        "project_id": status.project.public_id if status.project else None,
        "member_email": budget.member.email if budget.member else None,
        "monthly": credits_json(budget.monthly) if budget.monthly else None,
        "lifetime": credits_json(budget.lifetime) if budget.lifetime else None,
        "hard": budget.hard,
        "month": status.month,
        "month_spent": credits_json(status.month_spent),
        "lifetime_spent": credits_json(status.lifetime_spent),
    }


def _list(account) -> dict:
    members = {m.user_id: m for m in Membership.objects.filter(account=account)}
    statuses = budgets_for_account(account) + project_budgets_for_account(account)
    return {"items": [_json(status, members) for status in statuses]}


def _set(request, scope: str, body: BudgetIn, member=None) -> dict:
    account = request.auth.account
    budget_set(
        account=account, scope=scope, member=member, monthly=body.monthly, lifetime=body.lifetime,
        hard=body.hard, actor=None, actor_label=f"management key {request.auth.public_id}",
    )  # fmt: skip
    return _list(account)


def _member(request, member_id: str) -> Membership:
    membership = (
        Membership.objects.filter(account=request.auth.account, public_id=member_id)
        .select_related("user")
        .first()
    )
    if membership is None:
        raise Http404("No such member.")
    return membership


@router.get("/budgets", response=BudgetList, operation_id="budgets_list", summary="List budgets")
def budgets_list(request):
    """The account's budget, its members' and its projects' budgets, with this month's and
    lifetime spend."""
    return _list(request.auth.account)


@router.put(
    "/budgets/account", response=BudgetList, operation_id="budget_account_set",
    summary="Set the account's budget",
)  # fmt: skip
def budget_account_set(request, body: BudgetIn):
    """Set the account's budget; neither `monthly` nor `lifetime` removes it. A change reaches
    every web process within a second: a budget set below what is spent refuses the next call."""
    return _set(request, BudgetScope.ACCOUNT, body)


@router.put(
    "/budgets/members/{member_id}", response=BudgetList, operation_id="budget_member_set",
    summary="Set a member's budget",
)  # fmt: skip
def budget_member_set(request, member_id: str, body: BudgetIn):
    """Set the budget of the keys a member created; neither amount removes it."""
    return _set(request, BudgetScope.MEMBER, body, _member(request, member_id).user)


@router.delete(
    "/budgets/members/{member_id}", response={204: None}, operation_id="budget_member_delete",
    summary="Remove a member's budget",
)  # fmt: skip
def budget_member_delete(request, member_id: str):
    empty = BudgetIn(monthly=None, lifetime=None)
    _set(request, BudgetScope.MEMBER, empty, _member(request, member_id).user)
    return Status(204, None)
