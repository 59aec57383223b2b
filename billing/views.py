"""Console pages for the wallet and for usage: balance and ledger, redemption codes, the
low-balance threshold, and usage reports with their chart, request log and CSV export.

Reports are read through ``billing.reports``, the selectors the management API uses too, so a
page, its CSV and the API agree to the micro-credit. Filters live in the URL: a report can be
bookmarked and shared. Dates, days, the period presets and the times shown are in the account's
time zone (``Account.time_zone``); the CSV files say which, with their filters, on their first
line.
"""

import csv
import dataclasses
from datetime import datetime, timedelta
from math import ceil
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.paginator import Paginator
from django.db.models import Sum
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url, trigger_client_event

from accounts import permissions
from accounts.decorators import account_view
from accounts.models import Account, Membership
from accounts.selectors import projects_visible_to
from billing import errors, redemption, services
from billing.forms import (
    LedgerFilterForm,
    RedeemForm,
    ThresholdForm,
    UsageFilterForm,
)
from billing.models import LedgerKind
from billing.reports import (
    CONSOLE_GROUP_BYS,
    PRESETS,
    FilterError,
    UsageFilter,
    UsageReport,
    charge_sources,
    key_label,
    ledger_filter_from,
    ledger_for_account,
    runway_days,
    usage_filter_from,
    usage_record_count,
    usage_records,
    usage_report,
)
from billing.selectors import wallet_of
from catalogue.models import AIModel
from core import charts
from core.money import credits_text, format_credits, plain_credits
from keys.selectors import api_keys_visible_to, groups_available

LEDGER_PAGE_SIZE = 25
LOG_PAGE_SIZE = 50
USAGE_PARAMS = (
    "project_id", "member", "api_key_id", "model", "family", "tag", "preset", "since", "until",
    "group_by",
)  # fmt: skip
LEDGER_PARAMS = ("kind", "preset", "since", "until")
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
    "day": (("day", "Day"),),
    "hour": (("hour", "Hour"),),
    "model": (("model", "Model ID"), ("model_name", "Model")),
    "api_key": (("api_key_id", "Key ID"), ("key_name", "Key")),
    "tag": (("tag", "Tag"),),
    "project": (("project_id", "Project ID"), ("project_name", "Project")),
    "member": (("member", "Member"),),
    "key_model": (
        ("api_key_id", "Key ID"),
        ("key_name", "Key"),
        ("model", "Model ID"),
        ("model_name", "Model"),
    ),
    "model_key": (
        ("model", "Model ID"),
        ("model_name", "Model"),
        ("api_key_id", "Key ID"),
        ("key_name", "Key"),
    ),
}
# Where a bucket's row (and bar) leads: its filter applied, grouped the next useful way.
DRILL_GROUP_BY = {"day": "api_key", "model": "api_key", "api_key": "model"}
VIEW_LABELS = {
    "day": "By day",
    "hour": "By hour",
    "api_key": "By key",
    "model": "By model",
    "tag": "By tag",
    "project": "By project",
    "member": "By member",
    "key_model": "Key \N{MULTIPLICATION SIGN} model",
    "model_key": "Model \N{MULTIPLICATION SIGN} key",
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


def _zone_name(account: Account) -> str:
    return account.time_zone or "UTC"


def _presets(name: str, params: dict, chosen: str) -> list[dict]:
    """The period presets as links: the current filters with that period instead of the dates."""
    base = {key: value for key, value in params.items() if key not in ("since", "until", "page")}
    return [
        {
            "label": label,
            "url": _url(name, {**base, "preset": preset}),
            "current": preset == chosen,
        }
        for preset, label in PRESETS.items()
    ]


# CSV cells starting like a formula are quoted, so a spreadsheet never runs a key's name.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _safe_cell(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def _slug(text: str) -> str:
    """A file-name-safe rendering of a key's or model's name."""
    kept = "".join(c if c.isalnum() or c in "._" else "-" for c in text.lower())
    return "-".join(part for part in kept.split("-") if part)[:40] or "x"


def _csv_response(filename: str, first_line: str):
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    # The filters, in words, on the first line: a file that travels says what it is.
    writer.writerow([_safe_cell(first_line)])
    return response, writer


# --- Wallet ------------------------------------------------------------------------------------


def _ledger_query(request, params: dict):
    """The ledger entries the wallet's filters select (FilterError if they are refused)."""
    kind = params.get("kind", "")
    filters = ledger_filter_from(
        {**params, "kind": ""} if kind == LEDGER_ALL else params, tz=request.account.zone
    )
    entries = ledger_for_account(request.account, **filters)
    if not kind:
        # Every call holds, then settles: by default the ledger shows money that moved.
        entries = entries.exclude(kind__in=(LedgerKind.HOLD, LedgerKind.RELEASE))
    return entries, filters


def _ledger_rows(request, entries) -> list[dict]:
    """Ledger entries with what each charge paid for: its key, model and request or task."""
    entries = list(entries)
    charges = [entry.reference for entry in entries if entry.kind == LedgerKind.CHARGE]
    sources = charge_sources(request.account, charges, tz=request.account.zone)
    rows = []
    for entry in entries:
        source = sources.get(entry.reference) if entry.kind == LedgerKind.CHARGE else None
        rows.append({"entry": entry, "source": source, "links": _source_links(source)})
    return rows


LEDGER_CSV_CHUNK = 500


def _ledger_rows_chunked(request, entries):
    """``_ledger_rows`` for a whole ledger, a chunk at a time (one lookup of charges each)."""
    size = LEDGER_CSV_CHUNK
    chunk = []
    for entry in entries.iterator(chunk_size=size):
        chunk.append(entry)
        if len(chunk) == size:
            yield from _ledger_rows(request, chunk)
            chunk = []
    if chunk:
        yield from _ledger_rows(request, chunk)


def _source_links(source) -> dict:
    if source is None:
        return {}
    links = {}
    line = source.single
    if line and line.api_key_id and not line.key_deleted:
        links["key"] = reverse("keys:key-detail", args=[line.api_key_id])
    if source.task_id:
        links["task"] = reverse("generation:task-detail", args=[source.task_id])
    # The calls in the usage report: their day, narrowed to the one key and model if there is one.
    report = {"since": source.day.isoformat(), "until": source.day.isoformat()}
    if line:
        report |= {"model": line.model, "group_by": "hour"}
        if line.api_key_id:
            report["api_key_id"] = line.api_key_id
    else:
        report["group_by"] = "key_model"
    links["usage"] = _url("billing:usage", report)
    return links


def _ledger_context(request) -> tuple[dict, int]:
    params = _params(request.GET, LEDGER_PARAMS)
    zone = _zone_name(request.account)
    presets = _presets("billing:wallet", params, params.get("preset", ""))
    try:
        entries, filters = _ledger_query(request, params)
    except FilterError as error:
        form = LedgerFilterForm(params, error=error)
        return {
            "ledger_form": form,
            "ledger_error": error.console,
            "ledger_page": None,
            "ledger_url": _url("billing:wallet", params),
            "ledger_presets": presets,
            "time_zone": zone,
        }, 422
    paginator = Paginator(entries, LEDGER_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    page_params = {**params, "page": page.number} if page.number > 1 else params
    net = entries.order_by().aggregate(net=Sum("amount"))["net"] or 0

    def page_url(number: int) -> str:
        return _url("billing:wallet", {**params, "page": number} if number > 1 else params)

    shown = dict(params)
    if "preset" in params:  # the form shows the preset's dates
        shown |= _ledger_dates(filters, request.account.zone)
    return {
        "ledger_form": LedgerFilterForm(shown),
        "ledger_page": page,
        "ledger_rows": _ledger_rows(request, page.object_list),
        "ledger_net": net,
        "ledger_filtered": bool(params),
        "ledger_url": _url("billing:wallet", page_params),
        "ledger_csv_url": _url("billing:ledger-export", params),
        "ledger_presets": presets,
        "ledger_previous_url": page_url(page.number - 1) if page.has_previous() else "",
        "ledger_next_url": page_url(page.number + 1) if page.has_next() else "",
        "time_zone": zone,
    }, 200


def _ledger_dates(filters: dict, tz) -> dict:
    dates = {}
    if filters.get("since"):
        dates["since"] = filters["since"].astimezone(tz).date().isoformat()
    if filters.get("until"):
        last = filters["until"] - timedelta(microseconds=1)
        dates["until"] = last.astimezone(tz).date().isoformat()
    return dates


def _ledger_words(request, params: dict, filters: dict) -> tuple[str, str]:
    """The ledger filters in words (the CSV's first line) and as a file name."""
    kind = params.get("kind", "")
    kinds = dict(LedgerKind.choices)
    kind_words = (
        "everything with holds"
        if kind == LEDGER_ALL
        else kinds.get(kind, "balance changes")
        if kind
        else "balance changes"
    )
    dates = _ledger_dates(filters, request.account.zone)
    period = f"{dates.get('since', 'start')} to {dates.get('until', 'now')}"
    preset = f" ({PRESETS[params['preset']]})" if params.get("preset") in PRESETS else ""
    words = (
        f"# ByteSpike ledger of {request.account.name} ({request.account.public_id}); "
        f"kind: {kind_words}; dates: {period}{preset}; "
        f"time zone: {_zone_name(request.account)}"
    )
    filename = f"bytespike-ledger-{_slug(kind_words)}-{dates.get('since', 'start')}-to-" + (
        f"{dates.get('until', 'now')}.csv"
    )
    return words, filename


LEDGER_CSV_COLUMNS = (
    "time",
    "kind",
    "description",
    "key_id",
    "key",
    "model",
    "request_id",
    "calls",
    "amount",
    "held_change",
    "balance_after",
)


@require_GET
@account_view()
def ledger_export(request):
    """The ledger with the wallet's filters as CSV: every entry (not one page), newest first, as
    the page lists them, then the net change of the amounts."""
    params = _params(request.GET, LEDGER_PARAMS)
    try:
        entries, filters = _ledger_query(request, params)
    except FilterError as error:
        return HttpResponse(error.console, status=422, content_type="text/plain; charset=utf-8")
    words, filename = _ledger_words(request, params, filters)
    response, writer = _csv_response(filename, words)
    writer.writerow(LEDGER_CSV_COLUMNS)
    tz = request.account.zone
    net = 0
    for row in _ledger_rows_chunked(request, entries):
        entry, source = row["entry"], row["source"]
        net += entry.amount
        lines = source.lines if source else ()
        writer.writerow(
            [
                entry.created_at.astimezone(tz).isoformat(),
                entry.get_kind_display(),
                _safe_cell(entry.description or ("" if source else entry.reference)),
                "; ".join(line.api_key_id or "" for line in lines),
                _safe_cell("; ".join(line.key_name for line in lines)),
                "; ".join(line.model for line in lines),
                (source.task_id or source.request_id or entry.reference) if source else "",
                source.calls if source else "",
                plain_credits(entry.amount),
                plain_credits(entry.held_change),
                plain_credits(entry.balance_after),
            ]
        )
    writer.writerow(["Total", "", "", "", "", "", "", "", plain_credits(net), "", ""])
    return response


def _wallet_context(request, **extra) -> dict:
    wallet = extra.pop("wallet", None) or wallet_of(request.account)
    can_manage = request.membership.can(permissions.MANAGE_BILLING)
    runway = runway_days(request.account, wallet.available)
    context = {
        "wallet": wallet,
        "can_manage": can_manage,
        "runway": runway,
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


def _scoped(request, flt: UsageFilter) -> UsageFilter:
    """Developers and viewers see the usage of their projects only; the other roles, all."""
    return dataclasses.replace(flt, projects=request.membership.project_scope())


def _project_choices(membership, flt: UsageFilter | None) -> list[tuple[str, str]]:
    """The projects the member may see (a deleted one's usage can still be looked at)."""
    projects = list(projects_visible_to(membership))
    if flt and flt.project and flt.project.pk not in {project.pk for project in projects}:
        projects.append(flt.project)
    return [(project.public_id, project.name) for project in projects]


def _member_choices(membership, flt: UsageFilter | None) -> list[tuple[str, str]]:
    """The account's members, and whoever the filter names (someone who has left)."""
    emails = sorted(
        Membership.objects.filter(account=membership.account).values_list("user__email", flat=True)
    )
    if flt and flt.member and flt.member.email not in emails:
        emails.append(flt.member.email)
    return [(email, email) for email in emails]


def _key_choices(membership, flt: UsageFilter | None) -> list[tuple[str, str]]:
    """The keys the member may see (those of their projects, for developers and viewers)."""
    keys = sorted(api_keys_visible_to(membership), key=lambda key: (key.name.lower(), key.pk))
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


def _usage_form(membership, params, flt=None, error=None) -> UsageFilterForm:
    shown = {**params, **flt.dates(), "group_by": flt.group_by} if flt else params
    shown.pop("preset", None)
    return UsageFilterForm(
        shown,
        error=error,
        projects=_project_choices(membership, flt),
        members=_member_choices(membership, flt),
        keys=_key_choices(membership, flt),
        models=_model_choices(membership.account, flt),
    )


def _drill(flt: UsageFilter, **narrower) -> str:
    """The report's URL with a bucket's filter applied."""
    params = {**flt.as_params(), **narrower}
    if "since" in narrower:
        params.pop("preset", None)
    return _url("billing:usage", params)


def _bucket_cells(flt: UsageFilter, bucket: dict) -> tuple[list[str], dict]:
    """A bucket's CSV value(s), and what the table shows: label, detail and a drill-down link
    (the bucket's filter applied, grouped the next useful way)."""
    value = bucket["bucket"]
    if flt.group_by in ("day", "hour"):
        moment = datetime.fromisoformat(value).astimezone(flt.tz)
        if flt.group_by == "day":
            day = moment.date().isoformat()
            return [day], {
                "label": f"{moment:%a} {moment.day} {moment:%b %Y}",
                "url": _drill(flt, since=day, until=day, group_by="api_key"),
            }
        return [moment.isoformat(timespec="minutes")], {
            "label": f"{moment.day} {moment:%b %Y}, {moment:%H}:00",
        }
    if flt.group_by == "model":
        return [value, bucket.get("label") or value], {
            "label": bucket.get("label") or value,
            "detail": value,
            "url": _drill(flt, model=value, group_by=DRILL_GROUP_BY["model"]),
        }
    if flt.group_by == "tag":
        return [value], {"label": value, "url": _drill(flt, tag=value, group_by="api_key")}
    if flt.group_by == "project":
        if value is None:
            return ["", "No project"], {"label": "No project"}
        name = bucket.get("label") or value
        return [value, name], {
            "label": name, "detail": value,
            "url": _drill(flt, project_id=value, group_by="api_key"),
        }  # fmt: skip
    if flt.group_by == "member":
        if not value:
            return [""], {"label": "No member (a management key's keys)"}
        return [value], {"label": value, "url": _drill(flt, member=value, group_by="api_key")}
    if flt.group_by == "api_key":
        if value is None:
            return ["", "No key"], {"label": "No key"}
        return [value, bucket.get("label") or ""], {
            # The CSV has the key's id in a column of its own; the table and chart add the end
            # of its masked secret to its name: a deleted key and a live one may share a name.
            "label": key_label(bucket["label"], bucket.get("last4"))
            if bucket.get("label")
            else "Unnamed key",
            "detail": value,
            "url": _drill(flt, api_key_id=value, group_by=DRILL_GROUP_BY["api_key"]),
        }
    key_id, model = bucket["api_key_id"], bucket["model"]
    key_name = (bucket["key_name"] or "Unnamed key") if key_id else "No key"
    model_name = bucket["model_name"] or model
    narrower = {"model": model, "group_by": "day"}
    if key_id:
        narrower["api_key_id"] = key_id
    key_cells = [key_id or "", bucket["key_name"] or ("" if key_id else "No key")]
    model_cells = [model, model_name]
    if flt.group_by == "key_model":
        cells, label, group = key_cells + model_cells, model_name, key_name
    else:
        cells, label, group = model_cells + key_cells, key_name, model_name
    return cells, {
        "label": label,
        "group": group,
        "detail": model if flt.group_by == "key_model" else (key_id or ""),
        "url": _drill(flt, **narrower),
        "chart_label": f"{group} \N{MIDDLE DOT} {label}",
        # Both names must fit the chart's label column: each keeps its start.
        "chart_short": f"{_clip(group)} \N{MIDDLE DOT} {_clip(label)}",
    }


def _clip(text: str, limit: int = 13) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\N{HORIZONTAL ELLIPSIS}"


def _cells(row: dict) -> list[dict]:
    return [
        {"micros": row[name], "money": True} if name == "credits" else {"text": intcomma(row[name])}
        for name, _ in USAGE_COLUMNS
    ]


def _usage_table(report: UsageReport) -> dict:
    flt = report.filter
    rows = []
    previous_group = None
    for bucket in report.buckets:
        _, shown = _bucket_cells(flt, bucket)
        # Pair views: the key (or model) heads its first row only, so its models read as a group.
        first = shown.get("group") != previous_group
        previous_group = shown.get("group")
        rows.append({**shown, "first_of_group": first, "cells": _cells(bucket)})
    pairs = flt.group_by in ("key_model", "model_key")
    return {
        "bucket_heading": BUCKET_COLUMNS[flt.group_by][-1][1]
        if not pairs
        else BUCKET_COLUMNS[flt.group_by][3][1],
        "group_heading": BUCKET_COLUMNS[flt.group_by][1][1] if pairs else "",
        "title": VIEW_LABELS[flt.group_by],
        "columns": [heading for _, heading in USAGE_COLUMNS],
        "rows": rows,
        "totals": _cells(report.totals),
    }


def _scope(flt: UsageFilter, zone: str) -> tuple[str, list[str]]:
    """The report's period and what it is narrowed to, in words."""
    first, last = flt.first_day, flt.last_day
    period = f"{first.day} {first:%b %Y}"
    if last != first:
        period += f" \N{EN DASH} {last.day} {last:%b %Y}"
    if flt.preset:
        period = f"{PRESETS[flt.preset]}, {period}"
    scope = [f"Key {flt.api_key.name}" if flt.api_key else "All keys"]
    if flt.model:
        scope.append(flt.model.display_name)
    if flt.family:
        scope.append(f"{flt.family.capitalize()} models")
    if flt.tag:
        scope.append(f"Tag {flt.tag_param}")
    if flt.project:
        scope.append(f"Project {flt.project.name}")
    if flt.member:
        scope.append(f"Keys of {flt.member.email}")
    scope.append(VIEW_LABELS[flt.group_by].lower())
    scope.append(zone)
    return period, scope


def _usage_chart(report: UsageReport):
    flt = report.filter
    title = {
        "day": "Spend by day",
        "hour": "Spend by hour",
        "model": "Spend by model",
        "api_key": "Spend by key",
        "tag": "Spend by tag",
        "project": "Spend by project",
        "member": "Spend by member",
        "key_model": "Spend by key and model",
        "model_key": "Spend by model and key",
    }[flt.group_by]
    if flt.group_by in ("day", "hour"):
        links = {}
        if flt.group_by == "day":
            for bucket in report.buckets:
                links[bucket["bucket"]] = _bucket_cells(flt, bucket)[1].get("url", "")
        return charts.time_columns(
            report.buckets,
            since=flt.since.astimezone(flt.tz),
            until=flt.until.astimezone(flt.tz),
            hourly=flt.group_by == "hour",
            id="usage-chart",
            title=title,
            links=links,
            zone=_zone_label(flt),
        )
    items = []
    for bucket in report.buckets:
        shown = _bucket_cells(flt, bucket)[1]
        label = shown.get("chart_label") or shown["label"]
        short = shown.get("chart_short") or ""
        items.append((label, bucket["credits"], shown.get("url", ""), short))
    return charts.ranked_rows(items, id="usage-chart", title=title)


SERIES_NOUNS = {"model": "models", "api_key": "keys", "project": "projects",
                "member": "members", "tag": "tags"}  # fmt: skip


def _over_time(report: UsageReport):
    """For a view by model, key, project, member or tag: its spend over the days, stacked by
    that dimension, the biggest on their own and the rest as "other"."""
    flt = report.filter
    if flt.group_by not in SERIES_NOUNS:
        return None
    noun = SERIES_NOUNS[flt.group_by]
    return charts.stacked_days(
        report.days, report.series, id="usage-over-time", title=f"Daily spend by {noun[:-1]}",
        noun=noun, zone=_zone_label(flt),
    )  # fmt: skip


def _zone_label(flt: UsageFilter) -> str:
    return getattr(flt.tz, "key", None) or str(flt.tz)


def _log_context(request, flt: UsageFilter, params: dict, total: int | None = None) -> dict:
    """A page of the usage log; ``total``: how many calls the filter covers, when the report
    has counted them already."""
    if total is None:
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


def _usage_filter(request, params) -> UsageFilter:
    return usage_filter_from(
        request.account, params, tz=request.account.zone, group_bys=CONSOLE_GROUP_BYS
    )


def _views(flt: UsageFilter) -> list[dict]:
    """The report's other groupings, one click each, with the same filters."""
    return [
        {
            "label": label,
            "url": _url("billing:usage", {**flt.as_params(), "group_by": group_by}),
            "current": group_by == flt.group_by,
        }
        for group_by, label in VIEW_LABELS.items()
    ]


@require_GET
@account_view()
def usage(request):
    account = request.account
    params = _params(request.GET, USAGE_PARAMS)
    page = "billing/usage.html"
    zone = _zone_name(account)
    try:
        flt = _scoped(request, _usage_filter(request, params))  # another account's key: 404
    except FilterError as error:
        context = {
            "form": _usage_form(request.membership, params, error=error),
            "filter_error": error.console,
            "presets": _presets("billing:usage", params, ""),
            "time_zone": zone,
        }
        template = f"{page}#usage-report" if request.htmx else page
        response = render(request, template, context, status=422)
        return _push_filters(request, response, params)
    if request.htmx and request.htmx.target == "usage-log":
        context = {**_log_context(request, flt, params), "log_focus": True, "time_zone": zone}
        return render(request, f"{page}#usage-log", context)
    report = usage_report(account, flt)
    period, scope = _scope(flt, zone)
    context = {
        "period": period,
        "scope": scope,
        "form": _usage_form(request.membership, params, flt),
        "report": report,
        "filter": flt,
        "table": _usage_table(report),
        "chart": _usage_chart(report),
        "over_time": _over_time(report),
        "csv_url": _url("billing:usage-export", flt.as_params()),
        "presets": _presets("billing:usage", flt.as_params(), flt.preset),
        "views": _views(flt),
        "time_zone": zone,
        **_log_context(request, flt, params, total=report.totals["calls"]),
    }
    response = render(request, f"{page}#usage-report" if request.htmx else page, context)
    return _push_filters(request, response, params)


def _push_filters(request, response, params):
    """After the filter form is applied, the address bar holds the report's URL, without the
    empty fields the form sent."""
    if request.htmx and request.htmx.trigger == "usage-filters":
        push_url(response, _url("billing:usage", params))
    return response


def _usage_words(request, flt: UsageFilter) -> tuple[str, str]:
    """The report's filters in words (the CSV's first line) and as a file name."""
    key = f"{flt.api_key.name} ({flt.api_key.public_id})" if flt.api_key else "all keys"
    model = f"{flt.model.display_name} ({flt.model.slug})" if flt.model else "all models"
    dates = flt.dates()
    period = f"{dates['since']} to {dates['until']}"
    if flt.preset:
        period += f" ({PRESETS[flt.preset]})"
    words = (
        f"# ByteSpike usage of {request.account.name}; key: {key}; model: {model}; "
        + (f"family: {flt.family}; " if flt.family else "")
        + (f"tag: {flt.tag_param}; " if flt.tag else "")
        + (f"project: {flt.project.name} ({flt.project.public_id}); " if flt.project else "")
        + (f"member: {flt.member.email}; " if flt.member else "")
        + f"dates: {period}; time zone: {_zone_name(request.account)}; "
        f"grouped: {VIEW_LABELS[flt.group_by].lower()}"
    )
    parts = ["bytespike-usage"]
    if flt.api_key:
        parts.append(f"key-{_slug(flt.api_key.name)}-{flt.api_key.public_id}")
    if flt.model:
        parts.append(f"model-{_slug(flt.model.slug)}")
    if flt.family:
        parts.append(flt.family)
    if flt.tag:
        parts.append(f"tag-{_slug(flt.tag_param)}")
    if flt.project:
        parts.append(f"project-{_slug(flt.project.name)}")
    if flt.member:
        parts.append(f"member-{_slug(flt.member.email)}")
    parts += [f"{dates['since']}-to-{dates['until']}", f"by-{flt.group_by.replace('_', '-')}"]
    return words, "-".join(parts) + ".csv"


@require_GET
@account_view()
def usage_export(request):
    """The bucket table of the current filter as CSV: a line naming the filters, the header, one
    row per bucket, then the totals."""
    params = _params(request.GET, USAGE_PARAMS)
    try:
        flt = _scoped(request, _usage_filter(request, params))
    except FilterError as error:
        return HttpResponse(error.console, status=422, content_type="text/plain; charset=utf-8")
    report = usage_report(request.account, flt)
    words, filename = _usage_words(request, flt)
    response, writer = _csv_response(filename, words)
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
