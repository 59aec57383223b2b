"""The console's own page: the dashboard."""

import dataclasses

from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.decorators import account_view
from billing.models import LedgerKind, UsageRecord
from billing.reports import (
    daily_spend_by_key,
    ledger_for_account,
    spend_summary,
    usage_filter_from,
    usage_records,
)
from billing.selectors import wallet_of
from catalogue.models import AIModel, Family
from core import charts
from core.http import public_base_url
from generation.task_pages import tasks_recent_for_member
from keys import snippets
from keys.models import KeyStatus
from keys.selectors import api_keys_for_account, groups_available

RECENT = 6
RECENT_TASKS = 5


@require_GET
@account_view()
def dashboard(request):
    """Balance, spend, daily spend by key, and what happened lately (or how to start):
    recent requests, wallet activity and recent tasks."""
    account = request.account
    # Developers and viewers: the spend of their projects' keys; the other roles, all of it.
    projects = request.membership.project_scope()
    days, series = daily_spend_by_key(account, projects=projects)
    everything = dataclasses.replace(usage_filter_from(account, {}), projects=projects)
    recent_usage = list(usage_records(account, everything)[:RECENT])
    # Holds and releases come and go with every call; the activity list shows money moving.
    recent_ledger = list(
        ledger_for_account(account).exclude(kind__in=[LedgerKind.HOLD, LedgerKind.RELEASE])[:RECENT]
    )
    has_usage = bool(recent_usage) or UsageRecord.objects.filter(account=account).exists()
    context = {
        "wallet": wallet_of(account),
        "spend": spend_summary(account, projects=projects),
        "chart": charts.stacked_days(
            days,
            series,
            id="spend-chart",
            title="Daily spend by key, last 30 days",
            zone=str(request.account.zone),
        ),
        "recent_usage": recent_usage,
        "recent_ledger": recent_ledger,
        "has_usage": has_usage,
        "recent_tasks": tasks_recent_for_member(request.membership, RECENT_TASKS),
    }
    if not has_usage:
        context["has_keys"] = api_keys_for_account(account).exists()
        context["get_started"] = _get_started(request)
    return render(request, "console/dashboard.html", context)


def _get_started(request) -> dict:
    """The dashboard's quick start until the account has usage: the base URL, the newest key
    (masked: its secret was shown once), code that reads the key from $BYTESPIKE_API_KEY, and
    the API docs."""
    newest = (
        api_keys_for_account(request.account)
        .filter(status=KeyStatus.ACTIVE)
        .order_by("-created_at", "-id")
        .first()
    )
    model = snippets.text_model_for(newest) if newest else None
    if model is None:
        first_text = (
            AIModel.objects.filter(
                groups__in=groups_available(request.account), is_active=True, family=Family.TEXT
            )
            .order_by("slug")
            .values_list("slug", flat=True)
            .first()
        )
        model = first_text or "MODEL_ID"
    base_url = public_base_url(request)
    return {
        "base_url": base_url,
        "key": newest,
        "model": model,
        "snippets": snippets.quickstart(base_url=base_url, model=model, prefix="start"),
    }
