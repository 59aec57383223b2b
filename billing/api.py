"""Management API resources about money: usage reports (JSON or CSV), the per-request usage log,
the ledger, and the account with its wallet.

Every endpoint reads inside the account of the calling management key (``request.auth``)
through the report selectors of billing/reports.py, which the console's usage and wallet pages
use too, so an API report and the console agree. A filter they refuse is a ``FilterError``
(400 ``invalid_param``) and another account's key id is a 404; console/api.py renders both.
"""

import csv
from datetime import UTC, datetime
from io import StringIO

from django.http import HttpResponse
from django.utils.crypto import salted_hmac
from ninja import Field, Query, Router, Schema
from ulid import ULID

from accounts.models import Membership
from billing.models import LedgerEntry, LedgerKind, UsageRecord
from billing.reports import (
    GROUP_BYS,
    SUMS,
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
from catalogue.models import Family
from core.api import DEFAULT_PAGE_SIZE, MAX_PAGE, MAX_PAGE_SIZE, CreditsOut
from core.money import credits_json, to_credits

router = Router()

CSV_COLUMNS = ("bucket", "label", *SUMS)
# Spreadsheets run a cell that starts with one of these as a formula; key names are typed by
# any developer of the account, so a name could attack whoever opens the export.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NO_SUCH_KEY = {
    404: {
        "description": "`api_key_id` is not a key of your account.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
}


# --- Schemas ---------------------------------------------------------------------------------


class UsageFilterIn(Schema):
    api_key_id: str | None = Field(None, description="Only this key (`key_...`).")
    project_id: str | None = Field(
        None,
        description="Only this project's usage (`proj_...`): the calls settled while the key "
        "was in it, whichever project the key is in now.",
    )
    member: str | None = Field(
        None,
        description="Only the calls of the keys this member created (their e-mail, as "
        "group_by=member names them).",
        examples=["alice@example.com"],
    )
    model: str | None = Field(None, description="Only this model (its slug).")
    family: str | None = Field(None, description=f"One of {', '.join(Family.values)}.")
    tag: str | None = Field(
        None,
        description="Only calls carrying this tag, as key:value (X-ByteSpike-Tags: key=value).",
        examples=["team:search"],
    )
    since: str | None = Field(
        None,
        description=(
            "Start, rounded down to the hour. A date or an ISO 8601 time (UTC without a zone). "
            "Default: 30 days before `until`, at midnight UTC."
        ),
        examples=["2026-11-01"],
    )
    until: str | None = Field(
        None,
        description=(
            "End, rounded up to the hour; a date includes that whole day. Default: now. "
            "At most 400 days after `since`."
        ),
        examples=["2026-11-30"],
    )


class UsageReportIn(UsageFilterIn):
    group_by: str | None = Field(None, description=f"One of {', '.join(GROUP_BYS)}; default day.")
    format: str | None = Field(
        None, description="`csv` for a CSV file (a header, one row per bucket, a totals row)."
    )


class UsageSums(Schema):
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    images: int
    seconds: int
    credits: CreditsOut


class UsageBucket(UsageSums):
    bucket: str | None = Field(
        description=(
            "The bucket's start (ISO 8601, UTC) for day and hour; the model's slug or the key's "
            "id for model and api_key (null for calls made without a key, as in the console); "
            "the tag (key:value) for tag; the project's id for project (where the key was when "
            "the call settled); the key creator's e-mail for member."
        )
    )
    label: str | None = Field(
        description="The model's display name or the key's name; null for day and hour."
    )


class UsageFilterOut(Schema):
    since: datetime
    until: datetime = Field(description="Exclusive.")
    group_by: str
    api_key_id: str | None
    project_id: str | None
    member: str | None
    model: str | None
    family: str | None
    tag: str | None


class UsageReportOut(Schema):
    buckets: list[UsageBucket] = Field(
        description="Oldest first for day and hour; biggest spend first for model, api_key, tag."
    )
    totals: UsageSums
    filter: UsageFilterOut = Field(description="The filter as applied, with its defaults.")


class UsageRecordOut(Schema):
    request_id: str
    created_at: datetime
    api_key_id: str | None
    api_key_name: str | None
    model: str
    family: str
    protocol: str
    stream: bool
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    images: int
    seconds: int
    credits: CreditsOut
    latency_ms: int | None
    ttft_ms: int | None


class UsageRecordPage(Schema):
    items: list[UsageRecordOut]
    total: int
    page: int
    page_size: int


class TransactionFilterIn(Schema):
    kind: str | None = Field(None, description=f"One of {', '.join(LedgerKind.values)}.")
    since: str | None = Field(
        None,
        description="A date or an ISO 8601 time (UTC without a zone).",
        examples=["2026-11-01"],
    )
    until: str | None = Field(
        None, description="A date (that whole day is included) or an ISO 8601 time."
    )


class TransactionOut(Schema):
    id: str = Field(examples=["txn_01JD0000000000000000000000"])
    created_at: datetime
    kind: str = Field(description=f"One of {', '.join(LedgerKind.values)}.")
    amount: CreditsOut = Field(description="Change of the balance: negative for charges.")
    held_change: CreditsOut = Field(description="Change of the held amount (holds, releases).")
    balance_after: CreditsOut
    held_after: CreditsOut
    reference: str = Field(description="What it refers to: a request id, a task id, a payment.")
    description: str


class TransactionPage(Schema):
    items: list[TransactionOut]
    total: int
    page: int
    page_size: int


class WalletOut(Schema):
    balance: CreditsOut
    held: CreditsOut = Field(description="Reserved for calls and tasks in flight.")
    available: CreditsOut = Field(description="balance - held: what new calls can spend.")
    low_balance_threshold: CreditsOut = Field(description="0 = no low-balance alert.")
    concurrency_limit: int = Field(description="Synchronous requests in flight at once.")


class AccountOut(Schema):
    id: str = Field(examples=["acct_01JD0000000000000000000000"])
    name: str
    created_at: datetime
    wallet: WalletOut
    members: int


# --- Serialisation ---------------------------------------------------------------------------


def _utc_iso(moment: datetime) -> str:
    """The form pydantic writes datetimes in elsewhere in this API: ``...T00:00:00Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _sums_json(row: dict) -> dict:
    return {name: row[name] for name in SUMS} | {"credits": credits_json(row["credits"])}


def _bucket_json(row: dict, group_by: str) -> dict:
    bucket = row["bucket"]
    if group_by in ("day", "hour"):
        bucket = _utc_iso(datetime.fromisoformat(bucket))
    return {"bucket": bucket, "label": row.get("label")} | _sums_json(row)


def _filter_json(flt: UsageFilter) -> dict:
    return {
        "since": flt.since,
        "until": flt.until,
        "group_by": flt.group_by,
        "api_key_id": flt.api_key.public_id if flt.api_key else None,
        "project_id": flt.project.public_id if flt.project else None,
        "member": flt.member.email if flt.member else None,
        "model": flt.model.slug if flt.model else None,
        "family": flt.family or None,
        "tag": flt.tag_param or None,
    }


def _report_json(report: UsageReport) -> dict:
    group_by = report.filter.group_by
    return {
        "buckets": [_bucket_json(row, group_by) for row in report.buckets],
        "totals": _sums_json(report.totals),
        "filter": _filter_json(report.filter),
    }


def _csv_text(value) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _csv_row(bucket, label, sums: dict) -> list:
    # Credits as a Decimal, not credits_json's float: str(1e-06) would be written as "1e-06".
    amounts = [to_credits(sums[name]) if name == "credits" else sums[name] for name in SUMS]
    return [_csv_text(bucket), _csv_text(label), *amounts]


def _report_csv(report: UsageReport) -> HttpResponse:
    flt = report.filter
    out = StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in report.buckets:
        shown = _bucket_json(row, flt.group_by)
        writer.writerow(_csv_row(shown["bucket"], shown["label"], row))
    writer.writerow(_csv_row("total", "", report.totals))
    params = flt.as_params()
    filename = f"usage-{params['since']}-to-{params['until']}-by-{flt.group_by}.csv"
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _record_json(record: UsageRecord) -> dict:
    return {
        "request_id": record.request_id,
        "created_at": record.created_at,
        "api_key_id": record.api_key.public_id if record.api_key else None,
        "api_key_name": record.api_key.name if record.api_key else None,
        "model": record.model.slug,
        "family": record.family,
        "protocol": record.protocol,
        "stream": record.stream,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cache_read_tokens": record.cache_read_tokens,
        "cache_write_tokens": record.cache_write_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "images": record.images,
        "seconds": record.seconds,
        "credits": credits_json(record.credits),
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
    }


def transaction_id(entry: LedgerEntry) -> str:
    """``txn_<ULID>`` for a ledger entry, which has no public id column.

    The ULID's time is the entry's and its random part an HMAC of the row id: stable, sortable
    by time like every other public id, and it does not tell how many entries the platform has
    (the row id would). A future ``public_id`` column can be backfilled with this function.
    """
    digest = salted_hmac("billing.api.transaction_id", str(entry.pk), algorithm="sha256").digest()
    millis = int(entry.created_at.timestamp() * 1000)
    return f"txn_{ULID.from_bytes(millis.to_bytes(6, 'big') + digest[:10])}"


def _transaction_json(entry: LedgerEntry) -> dict:
    return {
        "id": transaction_id(entry),
        "created_at": entry.created_at,
        "kind": entry.kind,
        "amount": credits_json(entry.amount),
        "held_change": credits_json(entry.held_change),
        "balance_after": credits_json(entry.balance_after),
        "held_after": credits_json(entry.held_after),
        "reference": entry.reference,
        "description": entry.description,
    }


# --- Usage -----------------------------------------------------------------------------------


@router.get(
    "/usage",
    response=UsageReportOut,
    tags=["usage"],
    operation_id="usage_report",
    summary="Usage report",
    openapi_extra={
        "responses": {
            200: {
                "description": "The report, or with `format=csv` the same as a CSV file.",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
            **NO_SUCH_KEY,
        }
    },
)
def usage_report_get(request, filters: Query[UsageReportIn]):
    """Calls, tokens, images, seconds and credits in buckets (by day, hour, model, key or tag)
    and their totals. Times are UTC and the range covers whole hours. By tag, a call with
    several tags counts in each of their buckets, so buckets may add up to more than the
    totals (which count every call once); calls without tags are in no bucket."""
    params = filters.model_dump()
    output = params.pop("format") or "json"
    if output not in ("json", "csv"):
        raise FilterError("format is json or csv.", "format")
    account = request.auth.account
    report = usage_report(account, usage_filter_from(account, params))
    if output == "csv":
        return _report_csv(report)
    return _report_json(report)


@router.get(
    "/usage/records",
    response=UsageRecordPage,
    tags=["usage"],
    operation_id="usage_records",
    summary="Usage records",
    openapi_extra={"responses": NO_SUCH_KEY},
)
def usage_records_list(
    request,
    filters: Query[UsageFilterIn],
    page: int = Query(1, ge=1, le=MAX_PAGE),
    page_size: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
):
    """Single billed requests in the filter, newest first. Failed calls are free and not listed."""
    account = request.auth.account
    flt = usage_filter_from(account, filters.model_dump())
    start = (page - 1) * page_size
    return {
        "items": [_record_json(r) for r in usage_records(account, flt)[start : start + page_size]],
        "total": usage_record_count(account, flt),
        "page": page,
        "page_size": page_size,
    }


# --- Ledger and account ----------------------------------------------------------------------


@router.get(
    "/billing/transactions",
    response=TransactionPage,
    tags=["billing"],
    operation_id="billing_transactions",
    summary="List transactions",
)
def transactions_list(
    request,
    filters: Query[TransactionFilterIn],
    page: int = Query(1, ge=1, le=MAX_PAGE),
    page_size: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
):
    """The wallet's ledger, newest first: every change of the balance or the held amount."""
    filters = ledger_filter_from(filters.model_dump())
    entries = ledger_for_account(request.auth.account, **filters)
    start = (page - 1) * page_size
    return {
        "items": [_transaction_json(entry) for entry in entries[start : start + page_size]],
        "total": entries.count(),
        "page": page,
        "page_size": page_size,
    }


@router.get(
    "/account",
    response=AccountOut,
    tags=["account"],
    operation_id="account_get",
    summary="Get the account",
)
def account_get(request):
    """The account of the management key, its wallet and how many members its team has."""
    account = request.auth.account
    wallet = wallet_of(account)
    return {
        "id": account.public_id,
        "name": account.name,
        "created_at": account.created_at,
        "wallet": {
            "balance": credits_json(wallet.balance),
            "held": credits_json(wallet.held),
            "available": credits_json(wallet.available),
            "low_balance_threshold": credits_json(wallet.low_balance_threshold),
            "concurrency_limit": wallet.concurrency_limit,
        },
        "members": Membership.objects.filter(account=account).count(),
    }
