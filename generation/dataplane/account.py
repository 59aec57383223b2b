"""GET /v1/balance and GET /v1/usage: free utility routes that tell an app what it may still
spend (the wallet, the calling key's quota and rolling caps) and what the calling key spent.

Both answer in the OpenAI style (errors in the Anthropic envelope when the request carries
``anthropic-version``) with money in credits. They only ever show the calling key: /v1/usage
ignores an ``api_key_id`` parameter, so one key cannot read another's usage.
"""

from dataclasses import replace
from datetime import UTC, datetime

from django.http import JsonResponse
from django.utils import timezone

from billing.limits import KeyUsage, key_usage
from billing.reports import SUMS, FilterError, usage_filter_from, usage_report
from billing.selectors import balance_read
from core.db import run_db
from core.errors import ApiError
from core.money import credits_json
from generation.dataplane.base import dataplane_view
from generation.metering import books_headers
from keys.auth import KeyPrincipal


def key_limits_json(principal: KeyPrincipal, usage: KeyUsage) -> dict:
    """The key's quota and its 5h/1d/7d windows, counted as billing.limits counts them when it
    admits a call (charged plus held for calls in flight), but read without refusing: a limit
    that is reached shows 0 remaining."""
    quota = principal.quota
    return {
        "id": principal.key_public_id,
        "name": principal.key_name,
        "quota": credits_json(quota) if quota else None,
        "quota_used": credits_json(usage.quota_used),
        "quota_remaining": credits_json(max(quota - usage.quota_used, 0)) if quota else None,
        "rate_limits": {
            name: None
            if window is None
            else {
                "limit": credits_json(window.cap),
                "used": credits_json(window.used),
                "remaining": credits_json(window.remaining),
                # When the oldest spend in the window drops out of it (none: nothing to wait for).
                "reset": datetime.fromtimestamp(window.reset, tz=UTC) if window.reset else None,
            }
            for name, window in usage.windows.items()
        },
    }


def _balance(principal: KeyPrincipal) -> tuple[dict, dict]:
    """The balance object and the wallet headers, from one read."""
    read = balance_read(principal, now=timezone.now())
    headers = books_headers(principal, read.wallet, read.key_charged)
    return headers, {
        "object": "balance",
        "balance": credits_json(read.wallet.balance),
        "held": credits_json(read.wallet.held),
        "available": credits_json(read.wallet.available),
        "key": key_limits_json(principal, read.key),
        "month": {
            "since": read.month_since,
            "by_model": [
                {"model": row.model, "credits": credits_json(row.credits), "calls": row.calls}
                for row in read.month_by_model
            ],
            "total": credits_json(sum(row.credits for row in read.month_by_model)),
        },
    }


def _sums(row: dict) -> dict:
    return {name: row[name] for name in SUMS} | {"credits": credits_json(row["credits"])}


def _usage(principal: KeyPrincipal, since: str | None, until: str | None) -> dict:
    account = principal.account_id
    params = {"since": since, "until": until, "api_key_id": principal.key_public_id}
    try:
        flt = usage_filter_from(account, params, default_group_by="day")
    except FilterError as error:
        raise ApiError(400, "invalid_param", str(error), error.field) from None
    by_day = usage_report(account, flt)
    by_model = usage_report(account, replace(flt, group_by="model"))
    return {
        "object": "usage",
        "since": flt.since,
        "until": flt.until,
        "key": key_limits_json(principal, key_usage(principal, complete=True)),
        "totals": _sums(by_day.totals),
        "by_model": [
            {"model": row["bucket"], "display_name": row["label"]} | _sums(row)
            for row in by_model.buckets
        ],
        "by_day": [
            {"day": datetime.fromisoformat(row["bucket"]).date().isoformat()} | _sums(row)
            for row in by_day.buckets
        ],
    }


@dataplane_view(methods=("GET",))
async def balance(request, principal: KeyPrincipal):
    headers, data = await run_db(_balance, principal)
    return JsonResponse(data, headers=headers)


@dataplane_view(methods=("GET",))
async def usage(request, principal: KeyPrincipal):
    since, until = request.GET.get("since"), request.GET.get("until")
    return JsonResponse(await run_db(_usage, principal, since, until))
