"""Settlement in batches: the metering engine writes its answered calls down many at a time,
in one transaction: their usage rows and rollups, and per account one ledger entry that charges
the sum from the lease the calls were admitted against. Calls with a hold of their own settle it
(billing/holds.py); failed calls' holds are released.
"""

from dataclasses import dataclass

from django.db import connection, transaction

from billing import sql
from billing.holds import Settlement, hold_release, hold_settle, ledger_row
from billing.models import Hold, HoldStatus, LedgerKind, UsageRecord, Wallet
from billing.services import WalletState
from billing.usage import Charge, record_usage_batch


@dataclass(frozen=True)
class Release:
    """A failed call's own hold, to give back (failed calls are free)."""

    reference: str
    account_id: int


def usage_batch_commit(*, batch: str, charges: list[Charge], releases: list[Release]) -> dict:
    """Write a batch of answered calls in one transaction: their usage rows, the rollups, and per
    account one ledger entry that names the batch and charges the sum (from the leases the calls
    were admitted against). Calls with their own hold settle it; releases give holds back.

    Returns what each charge cost (credits, shortfall), by reference. Nothing is written twice: a
    reference already recorded is skipped.
    """
    results: dict[str, Settlement] = {}
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Group commit: a PostgreSQL crash may lose the last moments of batches (at most
            # three times wal_writer_delay); a killed web process loses nothing it answered.
            sql.execute("SET LOCAL synchronous_commit TO OFF")
        _lock_wallets(charges, releases)
        for release in releases:
            hold_release(reference=release.reference)
        leased = [c for c in charges if c.lease]
        for charge in charges:
            if not charge.lease:
                results[charge.reference] = hold_settle(
                    reference=charge.reference, charge=charge.charge, usage=charge.usage,
                    at=charge.at,
                )  # fmt: skip
        if leased:
            results.update(_charge_leases(batch, leased))
    return results


def _lock_wallets(charges: list[Charge], releases: list[Release]) -> None:
    """Lock every wallet the batch touches, in account order, before touching any: two
    processes' batches over the same accounts would otherwise lock them in different orders
    (one settling account 2's hold then charging account 1's lease, the other the reverse) and
    deadlock. Everything else locks one wallet at a time."""
    accounts = {c.account_id for c in charges} | {r.account_id for r in releases}
    if len(accounts) < 2 or not connection.features.has_select_for_update:
        return  # one wallet cannot deadlock; SQLite's transaction holds the whole database
    list(
        Wallet.objects.filter(account_id__in=accounts)
        .order_by("account_id")
        .select_for_update()
        .values_list("account_id", flat=True)
    )


def _charge_leases(batch: str, charges: list[Charge]) -> dict[str, "Settlement"]:
    done = set(
        UsageRecord.objects.filter(request_id__in=[c.reference for c in charges]).values_list(
            "request_id", flat=True
        )
    )
    charges = [c for c in charges if c.reference not in done]
    results = {}
    by_lease: dict[tuple[int, str], list[Charge]] = {}
    for charge in charges:
        by_lease.setdefault((charge.account_id, charge.lease), []).append(charge)
    records = []
    for (account_id, lease), group in sorted(by_lease.items()):
        total = sum(c.charge for c in group)
        charged_total, wallet = _charge_lease(batch, account_id, lease, total, group[0].at)
        # What the wallet could not cover (a lease released as stale, then spent) is a
        # shortfall, taken from the last calls of the group.
        short = total - charged_total
        for charge in reversed(group):
            shortfall = min(short, charge.charge)
            short -= shortfall
            results[charge.reference] = Settlement(charge.charge - shortfall, shortfall, wallet)
            records.append((charge, charge.charge - shortfall, shortfall))
    record_usage_batch(batch, records)
    return results


def _charge_lease(batch, account_id, lease, total, at) -> tuple[int, WalletState]:
    """Take ``total`` from the lease's hold (and from the wallet's balance and held amount), in
    one ledger entry for the batch. If the lease was released meanwhile (its process looked
    dead), take it from what the wallet has available."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    balance, held, threshold, alerted = sql.execute(
        "SELECT balance, held, low_balance_threshold, low_balance_alerted FROM "
        f"{sql.table(Wallet)} WHERE account_id = %s{lock}",
        [account_id],
    )
    taken = sql.execute(
        f"UPDATE {sql.table(Hold)} SET amount = amount - %s, charged = charged + %s "
        "WHERE reference = %s AND status = %s AND amount >= %s RETURNING id",
        [total, total, lease, HoldStatus.OPEN, total],
    )
    from_hold = total if taken else 0
    charged = total if taken else max(min(total, balance - held), 0)
    balance, held = balance - charged, held - from_hold
    crossed = bool(charged and not alerted and threshold > 0 and balance - held < threshold)
    sql.execute(
        f"UPDATE {sql.table(Wallet)} SET balance = %s, held = %s, low_balance_alerted = %s "
        "WHERE account_id = %s",
        [balance, held, bool(alerted or crossed), account_id],
    )
    ledger_row(account_id, LedgerKind.CHARGE, amount=-charged, held_change=-from_hold,
               balance=balance, held=held, reference=batch,
               key=f"{batch}:{account_id}:{lease}", at=at)  # fmt: skip
    if crossed:
        from billing.jobs import low_balance_alert

        low_balance_alert.delay_on_commit(account_id)
    return charged, WalletState(balance, held)
