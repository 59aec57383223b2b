"""Reads of the wallet that pages, the management API and /v1/balance share."""

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.shortcuts import get_object_or_404
from django.utils.dateparse import parse_datetime

from accounts.models import Account
from billing.limits import WINDOWS, KeyUsage, key_caps, key_usage_from
from billing.models import Hold, HoldStatus, KeySpend, KeyTotal, Payment, UsageRollup, Wallet
from billing.services import WalletState


def wallet_of(account: Account) -> Wallet:
    """The account's wallet. Every account gets one when it is created; for one that has none,
    an unsaved empty wallet, which reads the same."""
    return Wallet.objects.filter(account=account).first() or Wallet(account=account)


@dataclass(frozen=True)
class ModelSpend:
    model: str  # the model's slug
    credits: int
    calls: int


@dataclass(frozen=True)
class BalanceRead:
    """What /v1/balance shows: the wallet, the calling key's limits, its spend this month."""

    wallet: WalletState
    key: KeyUsage
    key_charged: int  # the key's lifetime charges, without its open holds
    month_since: datetime
    month_by_model: list[ModelSpend]


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


# One statement: a balance is what apps poll before and between calls. One row per model the key
# spent on this month (or one row of NULLs), each carrying the wallet and the key's figures.
_BALANCE_SQL = """
    SELECT w.balance, w.held,
           (SELECT SUM(h.amount) FROM {hold} h WHERE h.api_key_id = %s AND h.status = %s),
           (SELECT kt.credits FROM {key_total} kt WHERE kt.api_key_id = %s),
           {window_columns},
           m.slug, spend.credits, spend.calls
    FROM (SELECT 1 AS one) one
    LEFT JOIN {wallet} w ON w.account_id = %s
    LEFT JOIN (SELECT {window_sums} FROM {key_spend} ks
               WHERE ks.api_key_id = %s AND ks.bucket >= %s) windows ON 1 = 1
    LEFT JOIN (SELECT r.model_id, SUM(r.credits) AS credits, SUM(r.calls) AS calls
               FROM {rollup} r WHERE r.account_id = %s AND r.api_key_id = %s AND r.hour >= %s
               GROUP BY r.model_id) spend ON 1 = 1
    LEFT JOIN {model} m ON m.id = spend.model_id
    ORDER BY spend.credits DESC, m.slug
"""


@functools.cache
def _balance_sql() -> str:
    names = [name for name, _, _ in WINDOWS]
    return _BALANCE_SQL.format(
        hold=_table(Hold),
        key_total=_table(KeyTotal),
        wallet=_table(Wallet),
        key_spend=_table(KeySpend),
        rollup=_table(UsageRollup),
        model=_table(UsageRollup._meta.get_field("model").related_model),
        window_columns=", ".join(f"windows.spent_{n}, windows.oldest_{n}" for n in names),
        window_sums=", ".join(
            f"SUM(CASE WHEN ks.bucket >= %s THEN ks.credits END) AS spent_{n}, "
            f"MIN(CASE WHEN ks.bucket >= %s THEN ks.bucket END) AS oldest_{n}"
            for n in names
        ),
    )


def _moment(value) -> datetime | None:
    """A timestamp as the database returned it (SQLite: text in UTC) as an aware datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def balance_read(key, *, now: datetime) -> BalanceRead:
    """``key`` is a KeyPrincipal (account_id, key_id, quota, rate_limit_*), read in one query."""
    month_since = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    starts = [now - span for _, span, _ in WINDOWS]
    adapt = connection.ops.adapt_datetimefield_value
    params = [key.key_id, HoldStatus.OPEN, key.key_id, key.account_id]
    for start in starts:
        params += [adapt(start), adapt(start)]
    params += [key.key_id, adapt(min(starts)), key.account_id, key.key_id, adapt(month_since)]
    with connection.cursor() as cursor:
        cursor.execute(_balance_sql(), params)
        rows = cursor.fetchall()
    balance, held, key_held, key_spent, *window_values = rows[0][: 4 + 2 * len(WINDOWS)]
    capped = {name for name, _, _ in key_caps(key)}
    windows = {
        name: (int(window_values[2 * i] or 0), _moment(window_values[2 * i + 1]))
        for i, (name, _, _) in enumerate(WINDOWS)
        if name in capped
    }
    return BalanceRead(
        # PostgreSQL sums bigints as numeric: back to int micro-credits.
        wallet=WalletState(balance or 0, held or 0),
        key=key_usage_from(key, spent=key_spent or 0, held=int(key_held or 0), windows=windows),
        key_charged=key_spent or 0,
        month_since=month_since,
        month_by_model=[
            ModelSpend(slug, int(credits), int(calls))
            for *_, slug, credits, calls in rows
            if slug is not None
        ],
    )


def holds_open_by_kind() -> dict[str, tuple[int, int]]:
    """Every account's open holds, by kind (request, task, lease): (how many, micro-credits held).
    For operators: the metrics scrape and the operations page."""
    from django.db.models import Count, Sum

    from billing.models import HoldKind

    found = {
        row["kind"]: (row["count"], row["amount"] or 0)
        for row in Hold.objects.filter(status=HoldStatus.OPEN)
        .order_by()
        .values("kind")
        .annotate(count=Count("id"), amount=Sum("amount"))
    }
    return {kind: found.get(kind, (0, 0)) for kind in HoldKind.values}


def payment_get_for_account(*, account: Account, public_id: str) -> Payment:
    """One of the account's payments; 404 for anyone else's."""
    return get_object_or_404(
        Payment.objects.select_related("created_by"), account=account, public_id=public_id
    )


def payments_for_account(account: Account, *, limit: int = 10) -> list[Payment]:
    return list(Payment.objects.filter(account=account).select_related("created_by")[:limit])
