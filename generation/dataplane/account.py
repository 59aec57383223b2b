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

from accounts.keyauth import KeyPrincipal
from billing.limits import key_usage
from billing.money import credits_json
from billing.reports import SUMS, FilterError, month_spend_by_model, usage_filter_from, usage_report
from billing.services import wallet_state
from core.db import run_db
from core.errors import ApiError
from generation.dataplane.base import dataplane_view


def key_limits_json(principal: KeyPrincipal, *, now: datetime) -> dict:
    """The key's quota and its 5h/1d/7d windows, counted as billing.limits counts them when it
    admits a call (charged plus held for calls in flight), but read without refusing: a limit
    that is reached shows 0 remaining."""
    usage = key_usage(principal, now=now, complete=True)
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


def _balance(principal: KeyPrincipal) -> dict:
    now = timezone.now()
    wallet = wallet_state(principal.account_id)
    by_model = month_spend_by_model(principal.account_id, api_key=principal.key_id)
    return {
        "object": "balance",
        "balance": credits_json(wallet.balance),
        "held": credits_json(wallet.held),
        "available": credits_json(wallet.available),
        "key": key_limits_json(principal, now=now),
        "month": {
            "since": now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
            "by_model": [
                {
                    "model": row["model_slug"],
                    "credits": credits_json(row["credits"] or 0),
                    "calls": row["calls"] or 0,
                }
                for row in by_model
            ],
            "total": credits_json(sum(row["credits"] or 0 for row in by_model)),
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
        "key": key_limits_json(principal, now=timezone.now()),
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
    return JsonResponse(await run_db(_balance, principal))


@dataplane_view(methods=("GET",))
async def usage(request, principal: KeyPrincipal):
    since, until = request.GET.get("since"), request.GET.get("until")
    return JsonResponse(await run_db(_usage, principal, since, until))
