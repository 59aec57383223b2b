"""Console page for budgets (issue 16, item 2): the account's and each member's, with what each
spent this month and ever; owners set them (billing/budgets.py)."""

from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from accounts import permissions
from accounts.decorators import account_view
from accounts.models import Membership
from billing.budgets import budget_set, budgets_for_account, project_budgets_for_account
from billing.forms import BudgetForm
from billing.models import BudgetScope
from core.money import format_credits_exact

PAGE = "billing/budgets.html"


def _amount(micros: int | None) -> str:
    return format_credits_exact(micros).replace(",", "") if micros else ""


def _context(request, **extra) -> dict:
    statuses = budgets_for_account(request.account)
    by_member = {s.budget.member_id: s for s in statuses if s.budget.scope == BudgetScope.MEMBER}
    account = next((s for s in statuses if s.budget.scope == BudgetScope.ACCOUNT), None)
    members = Membership.objects.filter(account=request.account).select_related("user")
    rows = []
    for membership in members:
        status = by_member.get(membership.user_id)
        rows.append({"membership": membership, "status": status})
    forms = extra.pop("forms", {})

    def form_for(key: str, status, member: str = "") -> BudgetForm:
        if key in forms:
            return forms[key]
        budget = status.budget if status else None
        return BudgetForm(
            initial={
                "member": member,
                "monthly": _amount(budget.monthly) if budget else "",
                "lifetime": _amount(budget.lifetime) if budget else "",
                "hard": budget.hard if budget else True,
            },
            prefix=key,
        )

    can_manage = request.membership.can(permissions.MANAGE_BILLING)
    for row in rows:
        row["form"] = form_for(
            row["membership"].public_id, row["status"], row["membership"].public_id
        )
    return {
        "account_status": account,
        "account_form": form_for("account", account),
        "rows": rows,
        "projects": project_budgets_for_account(
            request.account, projects=request.membership.project_scope()
        ),
        "can_manage": can_manage,
        "can_manage_projects": request.membership.can(permissions.MANAGE_PROJECTS),
        **extra,
    }


@require_GET
@account_view(permissions.VIEW)
def budgets(request):
    return render(request, PAGE, _context(request))


@require_POST
@account_view(permissions.MANAGE_BILLING)
def budget_save(request, target: str):
    member = None
    if target != "account":
        membership = Membership.objects.filter(account=request.account, public_id=target).first()
        if membership is None:
            raise Http404("No such member.")
        member = membership.user
    form = BudgetForm(request.POST, prefix=target)
    if not form.is_valid():
        return render(request, PAGE, _context(request, forms={target: form}), status=422)
    data = form.cleaned_data
    budget_set(
        account=request.account, scope=BudgetScope.MEMBER if member else BudgetScope.ACCOUNT,
        member=member, monthly=data["monthly"], lifetime=data["lifetime"], hard=data["hard"],
        actor=request.user,
    )  # fmt: skip
    who = member.email if member else "the account"
    removed = not data["monthly"] and not data["lifetime"]
    notice = f"Removed the budget of {who}." if removed else f"Saved the budget of {who}."
    return render(request, PAGE, _context(request, notice=notice))
