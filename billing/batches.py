"""Settlement in batches: the metering engine writes its answered calls down many at a time,
in one transaction: their usage rows and rollups, and per account one ledger entry that charges
the sum from the lease the calls were admitted against. Calls with a hold of their own settle it
(billing/holds.py); failed calls' holds are released.

On PostgreSQL a batch of leased calls costs two round trips, whatever its size: one that locks
the batch's wallets and reads them and the leases' holds, and one that sends every write and the
COMMIT (``sql.pipeline``).
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


@dataclass
class _Wallet:
    """A wallet's figures, read under its lock, kept current as the batch charges it."""

    balance: int
    held: int
    threshold: int
    alerted: bool


def usage_batch_commit(*, batch: str, charges: list[Charge], releases: list[Release]) -> dict:
    """Write a batch of answered calls in one transaction: their usage rows, the rollups, and per
    account one ledger entry that names the batch and charges the sum (from the leases the calls
    were admitted against). Calls with their own hold settle it; releases give holds back.

    Returns what each charge cost (credits, shortfall), by reference. Nothing is written twice: a
    reference already recorded is skipped.
    """
    results: dict[str, Settlement] = {}
    leased = [c for c in charges if c.lease]
    with transaction.atomic(), sql.pipeline():
        if connection.vendor == "postgresql":
            # Group commit: a PostgreSQL crash may lose the last moments of batches (at most
            # three times wal_writer_delay); a killed web process loses nothing it answered.
            sql.write("SET LOCAL synchronous_commit TO OFF")
        wallets, holds, done = _lock_and_read(charges, releases, leased)
        if leased:
            results.update(_charge_leases(batch, leased, wallets, holds, done))
        for release in releases:
            hold_release(reference=release.reference)
        for charge in charges:
            if not charge.lease:
                results[charge.reference] = hold_settle(
                    reference=charge.reference, charge=charge.charge, usage=charge.usage,
                    at=charge.at,
                )  # fmt: skip
    return results


def _lock_and_read(charges, releases, leased) -> tuple[dict[int, _Wallet], dict, set]:
    """Lock every wallet the batch touches, in account order, before touching any (two
    processes' batches over the same accounts would otherwise lock them in different orders and
    deadlock); then read the leases' holds (every change to a hold takes its wallet's lock
    first, so what is read now stays true until the commit) and which calls are already
    recorded. Three statements, one round trip."""
    accounts = sorted({c.account_id for c in charges} | {r.account_id for r in releases})
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    marks = lambda values: ", ".join(["%s"] * len(values))  # noqa: E731
    statements = [
        (
            "SELECT account_id, balance, held, low_balance_threshold, low_balance_alerted FROM "
            f"{sql.table(Wallet)} WHERE account_id IN ({marks(accounts)}) "
            f"ORDER BY account_id{lock}",
            accounts,
        )
    ]
    if leased:
        leases = sorted({c.lease for c in leased})
        references = [c.reference for c in leased]
        statements += [
            (
                f"SELECT reference, amount, status FROM {sql.table(Hold)} "
                f"WHERE reference IN ({marks(leases)})",
                leases,
            ),
            (
                f"SELECT request_id FROM {sql.table(UsageRecord)} "
                f"WHERE request_id IN ({marks(references)})",
                references,
            ),
        ]
    wallet_rows, *rest = sql.queries(statements)
    wallets = {row[0]: _Wallet(*row[1:]) for row in wallet_rows}
    if not leased:
        return wallets, {}, set()
    hold_rows, done_rows = rest
    holds = {reference: (amount, status) for reference, amount, status in hold_rows}
    return wallets, holds, {row[0] for row in done_rows}


def _charge_leases(batch, charges, wallets, holds, done) -> dict[str, Settlement]:
    charges = [c for c in charges if c.reference not in done]
    results = {}
    by_lease: dict[tuple[int, str], list[Charge]] = {}
    for charge in charges:
        by_lease.setdefault((charge.account_id, charge.lease), []).append(charge)
    records = []
    for (account_id, lease), group in sorted(by_lease.items()):
        total = sum(c.charge for c in group)
        wallet = wallets[account_id]
        amount, status = holds.get(lease, (0, None))
        from_lease = status == HoldStatus.OPEN and amount >= total
        if from_lease:
            holds[lease] = (amount - total, status)
        charged_total = _charge_lease(batch, account_id, lease, total, from_lease, wallet,
                                      group[0].at)  # fmt: skip
        state = WalletState(wallet.balance, wallet.held)
        # What the wallet could not cover (a lease released as stale, then spent) is a
        # shortfall, taken from the last calls of the group.
        short = total - charged_total
        for charge in reversed(group):
            shortfall = min(short, charge.charge)
            short -= shortfall
            results[charge.reference] = Settlement(charge.charge - shortfall, shortfall, state)
            records.append((charge, charge.charge - shortfall, shortfall))
    record_usage_batch(batch, records)
    return results


def _charge_lease(batch, account_id, lease, total, from_lease, wallet: _Wallet, at) -> int:
    """Take ``total`` from the lease's hold (and from the wallet's balance and held amount), in
    one ledger entry for the batch. If the lease was released meanwhile (its process looked
    dead), take it from what the wallet has available. Nothing here waits for the server."""
    if from_lease:
        sql.write(
            f"UPDATE {sql.table(Hold)} SET amount = amount - %s, charged = charged + %s "
            "WHERE reference = %s",
            [total, total, lease],
        )
    held_change = total if from_lease else 0
    charged = total if from_lease else max(min(total, wallet.balance - wallet.held), 0)
    wallet.balance -= charged
    wallet.held -= held_change
    crossed = bool(
        charged
        and not wallet.alerted
        and wallet.threshold > 0
        and wallet.balance - wallet.held < wallet.threshold
    )
    wallet.alerted = wallet.alerted or crossed
    sql.write(
        f"UPDATE {sql.table(Wallet)} SET balance = %s, held = %s, low_balance_alerted = %s "
        "WHERE account_id = %s",
        [wallet.balance, wallet.held, wallet.alerted, account_id],
    )
    ledger_row(account_id, LedgerKind.CHARGE, amount=-charged, held_change=-held_change,
               balance=wallet.balance, held=wallet.held, reference=batch,
               key=f"{batch}:{account_id}:{lease}", at=at)  # fmt: skip
    if crossed:
        from billing.jobs import low_balance_alert

        low_balance_alert.delay_on_commit(account_id)
    return charged
