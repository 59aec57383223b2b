"""Console pages for the wallet and for usage: balance and ledger, redemption codes, the
low-balance threshold, and usage reports with their chart, request log and CSV export.

Reports are read through ``billing.reports``, the selectors the management API uses too, so a
page, its CSV and the API agree to the micro-credit. Filters live in the URL: a report can be
bookmarked and shared. Times are UTC.
"""

import csv
from datetime import datetime, timedelta
from math import ceil
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url, trigger_client_event

from accounts import permissions
from accounts.decorators import account_view
from accounts.models import Account
from billing import errors, redemption, services
from billing.forms import (
    GROUP_BY_CHOICES,
    LedgerFilterForm,
    RedeemForm,
    ThresholdForm,
    UsageFilterForm,
    credits_text,
)
from billing.models import LedgerKind
from billing.reports import (
    FilterError,
    UsageFilter,
    UsageReport,
    ledger_filter_from,
    ledger_for_account,
    usage_filter_from,
    usage_record_count,
    usage_records,
    usage_report,
)
from billing.selectors import wallet_of
from catalogue.models import AIModel
from core import charts
from core.money import format_credits, format_credits_exact
from keys.selectors import api_keys_for_account, groups_available

LEDGER_PAGE_SIZE = 25
LOG_PAGE_SIZE = 50
USAGE_PARAMS = ("api_key_id", "model", "family", "since", "until", "group_by")
LEDGER_PARAMS = ("kind", "since", "until")
LEDGER_ALL = "all"  # the kind filter's "everything, holds too"; no kind means balance changes

# The bucket table's columns, in the CSV's order too: (report field, heading).
USAGE_COLUMNS = (
    ("calls", "Calls"),
    ("input_tokens", "Tokens in"),
    ("output_tokens", "Tokens out"),
    ("cache_read_tokens", "Cache read"),
    ("cache_write_tokens", "Cache write"),
    ("images", "Images"),
    ("seconds", "Seconds"),
    ("credits", "Credits"),
)
# The bucket column(s) per grouping: (CSV name, heading), then the label's, if any.
BUCKET_COLUMNS = {
    "day": (("day", "Day (UTC)"),),
    "hour": (("hour", "Hour (UTC)"),),
    "model": (("model", "Model ID"), ("model_name", "Model")),
    "api_key": (("api_key_id", "Key ID"), ("key_name", "Key")),
}


# --- Shared helpers --------------------------------------------------------------------------


def _params(query, names) -> dict[str, str]:
    """The filter parameters that have a value, in a fixed order (for stable URLs)."""
    return {name: query[name].strip() for name in names if query.get(name, "").strip()}


def _url(name: str, params: dict) -> str:
    query = urlencode(params)
    return reverse(name) + (f"?{query}" if query else "")


def _page_number(value, pages: int) -> int:
    number = int(value) if value and str(value).isdigit() else 1
    return min(max(number, 1), pages)


def plain_credits(micros: int) -> str:
    """Credits for machines (CSV): every decimal the amount has, no thousands separators."""
    return format_credits_exact(micros).replace(",", "")


# --- Wallet ------------------------------------------------------------------------------------


def _ledger_context(request) -> tuple[dict, int]:
    params = _params(request.GET, LEDGER_PARAMS)
    kind = params.get("kind", "")
    try:
        filters = ledger_filter_from({**params, "kind": ""} if kind == LEDGER_ALL else params)
    except FilterError as error:
        form = LedgerFilterForm(params, error=error)
        return {
            "ledger_form": form,
            "ledger_error": str(error),
            "ledger_page": None,
            "ledger_url": _url("billing:wallet", params),
        }, 422
    entries = ledger_for_account(request.account, **filters)
    if not kind:
        # Every call holds, then settles: by default the ledger shows money that moved.
        entries = entries.exclude(kind__in=(LedgerKind.HOLD, LedgerKind.RELEASE))
    paginator = Paginator(entries, LEDGER_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    page_params = {**params, "page": page.number} if page.number > 1 else params

    def page_url(number: int) -> str:
        return _url("billing:wallet", {**params, "page": number} if number > 1 else params)

    return {
        "ledger_form": LedgerFilterForm(params),
        "ledger_page": page,
        "ledger_filtered": bool(params),
        "ledger_url": _url("billing:wallet", page_params),
        "ledger_previous_url": page_url(page.number - 1) if page.has_previous() else "",
        "ledger_next_url": page_url(page.number + 1) if page.has_next() else "",
    }, 200


def _wallet_context(request, **extra) -> dict:
    wallet = extra.pop("wallet", None) or wallet_of(request.account)
    can_manage = request.membership.can(permissions.MANAGE_BILLING)
    context = {
        "wallet": wallet,
        "can_manage": can_manage,
        "can_view_statements": request.membership.can(permissions.VIEW_STATEMENTS),
    }
    if can_manage:
        context["redeem_form"] = RedeemForm()
        context["threshold_form"] = ThresholdForm(
            initial={"threshold": credits_text(wallet.low_balance_threshold)}
        )
    context.update(extra)
    return context


@require_GET
@account_view()
def wallet(request):
    ledger, status = _ledger_context(request)
    if request.htmx and request.htmx.target == "ledger":
        response = render(request, "billing/wallet.html#ledger", ledger, status=status)
        if request.htmx.trigger == "ledger-filters":
            push_url(response, _url("billing:wallet", _params(request.GET, LEDGER_PARAMS)))
        return response
    context = _wallet_context(request, **ledger)
    return render(request, "billing/wallet.html", context, status=status)


def _wallet_changed(request, template: str, **context) -> HttpResponse:
    """The changed card with the summary and banner swapped too; the ledger then refreshes."""
    response = render(request, template, _wallet_context(request, **context))
    return trigger_client_event(response, "wallet-changed")


def _wallet_refused(request, partial: str, **context) -> HttpResponse:
    if request.htmx:
        context = _wallet_context(request, **context)
        return render(request, f"billing/wallet.html#{partial}", context, status=422)
    ledger, _ = _ledger_context(request)
    context = _wallet_context(request, **ledger, **context)
    return render(request, "billing/wallet.html", context, status=422)


@require_POST
@account_view(permissions.MANAGE_BILLING)
def wallet_redeem(request):
    form = RedeemForm(request.POST)
    if form.is_valid():
        try:
            entry = redemption.redeem_code(
                account=request.account, code=form.cleaned_data["code"], actor=request.user
            )
        except errors.BillingError as error:
            form.add_error("code", error.message)
        else:
            notice = f"Added {format_credits(entry.amount)} credits."
            if not request.htmx:
                messages.success(request, notice)
                return redirect("billing:wallet")
            return _wallet_changed(request, "billing/wallet.html#redeem-done", redeem_notice=notice)
    return _wallet_refused(request, "wallet-redeem", redeem_form=form)


@require_POST
@account_view(permissions.MANAGE_BILLING)
def wallet_threshold(request):
    form = ThresholdForm(request.POST)
    if form.is_valid():
        amount = form.cleaned_data["threshold"]
        saved = services.wallet_set_low_balance_threshold(
            account=request.account, amount=amount, actor=request.user
        )
        notice = (
            f"Saved. You will be alerted when the available balance falls below "
            f"{format_credits(amount)} credits."
            if amount
            else "Saved. Low-balance alerts are off."
        )
        if not request.htmx:
            messages.success(request, notice)
            return redirect("billing:wallet")
        return _wallet_changed(
            request, "billing/wallet.html#threshold-done", wallet=saved, threshold_notice=notice
        )
    return _wallet_refused(request, "wallet-threshold", threshold_form=form)


# --- Usage -------------------------------------------------------------------------------------


def _key_choices(account: Account, flt: UsageFilter | None) -> list[tuple[str, str]]:
    keys = sorted(api_keys_for_account(account), key=lambda key: (key.name.lower(), key.pk))
    if flt and flt.api_key and flt.api_key.pk not in {key.pk for key in keys}:
        keys.append(flt.api_key)  # a deleted key's usage can still be looked at
    return [(key.public_id, _key_label(key)) for key in keys]


def _key_label(key) -> str:
    if key.deleted_at:
        return f"{key.name} (deleted)"
    return key.name if key.is_active else f"{key.name} ({key.display_status})"


def _model_choices(account: Account, flt: UsageFilter | None) -> list[tuple[str, str]]:
    models = list(
        AIModel.objects.filter(groups__in=groups_available(account))
        .distinct()
        .order_by("display_name", "slug")
    )
    if flt and flt.model and flt.model.pk not in {model.pk for model in models}:
        models.append(flt.model)
    return [(model.slug, model.display_name) for model in models]


def _usage_form(account, params, flt=None, error=None) -> UsageFilterForm:
    shown = {**flt.as_params(), **params} if flt else params
    return UsageFilterForm(
        shown,
        error=error,
        keys=_key_choices(account, flt),
        models=_model_choices(account, flt),
    )


def _bucket_cells(flt: UsageFilter, bucket: dict) -> tuple[list[str], dict]:
    """A bucket's CSV value(s), and what the table shows: label, detail and a drill-down link."""
    value = bucket["bucket"]
    if flt.group_by in ("day", "hour"):
        moment = datetime.fromisoformat(value)
        if flt.group_by == "day":
            label = f"{moment:%a} {moment.day} {moment:%b %Y}"
            return [moment.date().isoformat()], {"label": label}
        return [f"{moment:%Y-%m-%dT%H:%M}Z"], {
            "label": f"{moment.day} {moment:%b %Y}, {moment:%H}:00",
        }
    if flt.group_by == "model":
        link = {**flt.as_params(), "model": value, "group_by": "day"}
        return [value, bucket.get("label") or value], {
            "label": bucket.get("label") or value,
            "detail": value,
            "url": _url("billing:usage", link),
        }
    if value is None:
        return ["", "No key"], {"label": "No key"}
    link = {**flt.as_params(), "api_key_id": value, "group_by": "day"}
    return [value, bucket.get("label") or ""], {
        "label": bucket.get("label") or "Unnamed key",
        "detail": value,
        "url": _url("billing:usage", link),
    }


def _cells(row: dict) -> list[str]:
    return [
        format_credits_exact(row[name]) if name == "credits" else intcomma(row[name])
        for name, _ in USAGE_COLUMNS
    ]


def _usage_table(report: UsageReport) -> dict:
    flt = report.filter
    rows = []
    for bucket in report.buckets:
        _, shown = _bucket_cells(flt, bucket)
        rows.append({**shown, "cells": _cells(bucket)})
    return {
        "bucket_heading": BUCKET_COLUMNS[flt.group_by][-1][1],
        "title": f"By {dict(GROUP_BY_CHOICES)[flt.group_by].lower()}",
        "columns": [heading for _, heading in USAGE_COLUMNS],
        "rows": rows,
        "totals": _cells(report.totals),
    }


def _scope(flt: UsageFilter) -> tuple[str, list[str]]:
    """The report's period and what it is narrowed to, in words."""
    last = flt.until - timedelta(microseconds=1)
    period = f"{flt.since.day} {flt.since:%b %Y} \N{EN DASH} {last.day} {last:%b %Y}"
    scope = [f"Key {flt.api_key.name}" if flt.api_key else "All keys"]
    if flt.model:
        scope.append(flt.model.display_name)
    if flt.family:
        scope.append(f"{flt.family.capitalize()} models")
    scope.append(f"by {dict(GROUP_BY_CHOICES)[flt.group_by].lower()}")
    return period, scope


def _usage_chart(report: UsageReport):
    flt = report.filter
    title = (
        "Spend by "
        + {"day": "day", "hour": "hour", "model": "model", "api_key": "key"}[flt.group_by]
    )
    if flt.group_by in ("day", "hour"):
        return charts.time_columns(
            report.buckets,
            since=flt.since,
            until=flt.until,
            hourly=flt.group_by == "hour",
            id="usage-chart",
            title=title,
        )
    items = [
        (_bucket_cells(flt, bucket)[1]["label"], bucket["credits"]) for bucket in report.buckets
    ]
    return charts.ranked_rows(items, id="usage-chart", title=title)


def _log_context(request, flt: UsageFilter, params: dict) -> dict:
    total = usage_record_count(request.account, flt)
    pages = max(1, ceil(total / LOG_PAGE_SIZE))
    number = _page_number(request.GET.get("page"), pages)
    offset = (number - 1) * LOG_PAGE_SIZE
    records = list(usage_records(request.account, flt)[offset : offset + LOG_PAGE_SIZE])

    def page_url(page: int) -> str:
        return _url("billing:usage", {**params, "page": page} if page > 1 else params)

    return {
        "records": records,
        "log": {
            "total": total,
            "number": number,
            "pages": pages,
            "first": offset + 1 if records else 0,
            "last": offset + len(records),
            "previous_url": page_url(number - 1) if number > 1 else "",
            "next_url": page_url(number + 1) if number < pages else "",
        },
    }


@require_GET
@account_view()
def usage(request):
    account = request.account
    params = _params(request.GET, USAGE_PARAMS)
    page = "billing/usage.html"
    try:
        flt = usage_filter_from(account, params)  # another account's key: 404
    except FilterError as error:
        context = {"form": _usage_form(account, params, error=error), "filter_error": str(error)}
        template = f"{page}#usage-report" if request.htmx else page
        response = render(request, template, context, status=422)
        return _push_filters(request, response, params)
    if request.htmx and request.htmx.target == "usage-log":
        context = {**_log_context(request, flt, params), "log_focus": True}
        return render(request, f"{page}#usage-log", context)
    report = usage_report(account, flt)
    shown = {**flt.as_params(), **params}
    period, scope = _scope(flt)
    context = {
        "period": period,
        "scope": scope,
        "form": _usage_form(account, params, flt),
        "report": report,
        "filter": flt,
        "table": _usage_table(report),
        "chart": _usage_chart(report),
        "csv_url": _url("billing:usage-export", shown),
        **_log_context(request, flt, params),
    }
    response = render(request, f"{page}#usage-report" if request.htmx else page, context)
    return _push_filters(request, response, params)


def _push_filters(request, response, params):
    """After the filter form is applied, the address bar holds the report's URL, without the
    empty fields the form sent."""
    if request.htmx and request.htmx.trigger == "usage-filters":
        push_url(response, _url("billing:usage", params))
    return response


# CSV cells starting like a formula are quoted, so a spreadsheet never runs a key's name.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _safe_cell(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


@require_GET
@account_view()
def usage_export(request):
    """The bucket table of the current filter as CSV: one row per bucket, then the totals."""
    params = _params(request.GET, USAGE_PARAMS)
    try:
        flt = usage_filter_from(request.account, params)
    except FilterError as error:
        return HttpResponse(str(error), status=422, content_type="text/plain; charset=utf-8")
    report = usage_report(request.account, flt)
    shown = flt.as_params()
    filename = f"bytespike-usage-{shown['since']}-to-{shown['until']}-by-{flt.group_by}.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    bucket_columns = BUCKET_COLUMNS[flt.group_by]
    writer.writerow([name for name, _ in bucket_columns] + [name for name, _ in USAGE_COLUMNS])
    for bucket in report.buckets:
        cells, _ = _bucket_cells(flt, bucket)
        writer.writerow([_safe_cell(cell) for cell in cells] + _csv_values(bucket))
    padding = [""] * (len(bucket_columns) - 1)
    writer.writerow(["Total", *padding, *_csv_values(report.totals)])
    return response


def _csv_values(row: dict) -> list[str]:
    return [
        plain_credits(row[name]) if name == "credits" else str(row[name])
        for name, _ in USAGE_COLUMNS
    ]
