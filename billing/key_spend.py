"""Billing's answers to the key pages' questions (``keys.spend.SpendReader``): what each key
spent, and a key's usage section. Installed by billing/apps.py."""

from urllib.parse import urlencode

from django.urls import reverse

from billing.reports import key_spend, key_totals, usage_filter_from, usage_report
from core import charts
from keys.spend import KeySpend


def spend_by_key(account, api_keys: list) -> dict[int, KeySpend]:
    """Two queries in all: the 30 days' spend from the rollups, the lifetime from key totals."""
    recent = key_spend(account, api_keys)
    lifetime = key_totals(api_keys)
    return {
        key.pk: KeySpend(last_30_days=recent.get(key.pk, 0), lifetime=lifetime.get(key.pk, 0))
        for key in api_keys
    }


def usage_panel(account, api_key) -> dict:
    """The key's spend and daily spend over the usage page's default period."""
    flt = usage_filter_from(account, {"api_key_id": api_key.public_id}, tz=account.zone)
    report = usage_report(account, flt)
    chart = charts.time_columns(
        report.buckets,
        since=flt.since.astimezone(flt.tz),
        until=flt.until.astimezone(flt.tz),
        zone=account.time_zone,
        hourly=False,
        id="key-usage-chart",
        title=f"Daily spend of {api_key.name}",
        height=200,
    )
    return {
        "usage_report": report,
        "usage_chart": chart,
        "usage_url": f"{reverse('billing:usage')}?{urlencode({'api_key_id': api_key.public_id})}",
    }
