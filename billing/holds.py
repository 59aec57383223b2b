"""Holds: credit reserved for a call before its upstream is called, then settled (the actual
cost charged, the rest released) or released untouched; renewed while their call runs, released
when nobody renewed them (their process died); and leases, a web process's growing and
shrinking hold for a busy account's calls. Only the metering engine (billing/metering/) calls
these, directly or through billing/batches.py (tests/billing/test_one_door.py).

Every data-plane call places a hold and settles or releases it, so these run as a few plain SQL
statements (billing/sql.py) rather than through the ORM. The wallet's row is locked before its
hold is read or changed: one lock order, no deadlock.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from billing import sql
from billing.errors import InsufficientBalanceError
from billing.models import Hold, HoldKind, HoldStatus, LedgerEntry, LedgerKind, Wallet
from billing.services import WalletState, wallet_state
from billing.usage import UsageFacts, record_usage
from core.money import format_credits

logger = logging.getLogger(__name__)


def ledger_row(account_id, kind, *, amount=0, held_change=0, balance, held, reference, key, at):
    sql.insert_rows(
        LedgerEntry,
        [
            {
                "account_id": account_id,
                "kind": kind,
                "amount": amount,
                "held_change": held_change,
                "balance_after": balance,
                "held_after": held,
                "reference": reference,
                "idempotency_key": key,
                "description": "",
                "created_at": at,
            }
        ],
    )


def hold_place(
    *,
    account_id: int,
    reference: str,
    amount: int,
    api_key_id: int | None = None,
    counts_in_flight: bool = True,
    key_limits=None,
    kind: str = HoldKind.REQUEST,
    budgets=(),
    at: datetime | None = None,
) -> WalletState:
    """Reserve ``amount`` for ``reference``, or raise if the wallet cannot cover it, too many
    requests are in flight, or ``key_limits`` (the key's quota and caps: anything
    ``billing.limits.key_limits_check`` takes) are reached. Placing the same reference twice
    reserves once. ``at`` dates a hold recorded after the fact (a call made elsewhere).

    The key's limits are checked after the wallet's row is locked, in the same transaction: every
    hold of an account's keys takes that lock, so two concurrent calls cannot both see the room
    that only one of them fits in.
    """
    if amount < 0:
        raise ValueError("A hold cannot be negative.")
    in_flight = 1 if counts_in_flight else 0
    now = at or timezone.now()
    with transaction.atomic():
        created = sql.insert(
            Hold,
            {
                "account_id": account_id,
                "api_key_id": api_key_id,
                "reference": reference,
                "amount": amount,
                "status": HoldStatus.OPEN,
                "kind": kind,
                "counts_in_flight": bool(in_flight),
                "charged": 0,
                "shortfall": 0,
                "created_at": now,
                "renewed_at": now,
            },
            suffix="ON CONFLICT (reference) DO NOTHING RETURNING id",
        )
        if created is None:  # placed before: once is enough
            return wallet_state(account_id)
        # One conditional UPDATE decides: enough available, and room for one more in flight.
        row = sql.execute(
            f"UPDATE {sql.table(Wallet)} SET held = held + %s, in_flight = in_flight + %s "
            "WHERE account_id = %s AND balance - held >= %s "
            "AND (%s = 0 OR in_flight < concurrency_limit) RETURNING balance, held",
            [amount, in_flight, account_id, amount, in_flight],
        )
        if row is None:
            _raise_hold_refusal(account_id, amount)  # rolls the hold back
        if key_limits is not None:
            from billing.limits import key_limits_check  # builds on this module

            # Raises (rolling the hold back) when the key is at a limit, not counting this hold.
            key_limits_check(key_limits, now=now, pending=amount)
        if budgets:
            from billing.budgets import budgets_check  # builds on this module

            # This hold is open already: it counts among the scope's holds.
            budgets_check(budgets, pending=0)
        state = WalletState(*row)
        ledger_row(
            account_id,
            LedgerKind.HOLD,
            held_change=amount,
            balance=state.balance,
            held=state.held,
            reference=reference,
            key=f"hold:{reference}",
            at=now,
        )
    return state


def budgets_checked(account_id: int, budgets, amount: int) -> None:
    """Raise if ``amount`` more would go over one of ``budgets``, under the wallet's lock (a
    task submitted while the counters cannot be reached: its hold comes in its own
    transaction)."""
    from billing.budgets import budgets_check

    with transaction.atomic():
        Wallet.objects.select_for_update().filter(account_id=account_id).first()
        budgets_check(budgets, pending=amount)


def _raise_hold_refusal(account_id: int, amount: int):
    wallet, _ = Wallet.objects.get_or_create(account_id=account_id)
    if wallet.available < amount:
        raise InsufficientBalanceError(
            f"This request may cost up to {format_credits(amount)} credits; the wallet has "
            f"{format_credits(wallet.available)} available. Top up, or ask for fewer tokens."
        )
    from billing.metering.limits import Headroom, refusal

    now = int(time.time())
    raise refusal(Headroom("concurrency", wallet.concurrency_limit, 0, now + 1), now)


@dataclass(frozen=True)
class Settlement:
    charged: int
    shortfall: int
    wallet: WalletState
    already_closed: bool = False


def _hold_with_locked_wallet(reference: str) -> tuple | None:
    """The hold and its wallet's figures, with the wallet row locked (PostgreSQL; SQLite's
    IMMEDIATE transactions serialise writers anyway).

    The hold is read after the lock is taken, in a statement of its own: every change to a hold
    takes its wallet's lock first, so what is read then stays true until the transaction ends.
    (Read in the locking statement, it could be the version from before the wait.)
    """
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    wallet = sql.execute(
        "SELECT balance, held, low_balance_threshold, low_balance_alerted FROM "
        f"{sql.table(Wallet)} WHERE account_id = (SELECT account_id FROM {sql.table(Hold)} "
        f"WHERE reference = %s){lock}",
        [reference],
    )
    if wallet is None:
        return None
    hold = sql.execute(
        f"SELECT id, account_id, amount, counts_in_flight, status FROM {sql.table(Hold)} "
        "WHERE reference = %s",
        [reference],
    )
    return (*hold, *wallet)


def hold_settle(
    *, reference: str, charge: int, usage: UsageFacts, at: datetime | None = None
) -> Settlement:
    """Charge the actual cost and release the rest of the hold, writing the usage record.

    A charge above what the wallet can cover (its balance less the other holds) charges what it
    can and records the shortfall. Settling a settled hold changes nothing. A hold that was
    released while its call still ran (its process looked dead) is charged all the same: what was
    used is paid for, from what the wallet has available.
    """
    if charge < 0:
        raise ValueError("A charge cannot be negative.")
    at = at or timezone.now()
    with transaction.atomic():
        row = _hold_with_locked_wallet(reference)
        if row is None:
            raise Hold.DoesNotExist(reference)
        hold_id, account_id, amount, in_flight, status, balance, held, threshold, alerted = row
        if status == HoldStatus.SETTLED:
            return _closed(hold_id)
        was_open = status == HoldStatus.OPEN
        releasing = amount if was_open else 0
        charged = min(charge, balance - (held - releasing))
        shortfall = charge - charged
        claimed = sql.execute(
            f"UPDATE {sql.table(Hold)} SET status = %s, charged = %s, shortfall = %s, "
            "closed_at = COALESCE(closed_at, %s) WHERE id = %s AND status = %s RETURNING id",
            [HoldStatus.SETTLED, charged, shortfall, at, hold_id, status],
        )
        if claimed is None:  # cannot happen: the hold was read under the wallet's lock
            return _closed(hold_id)
        balance, held = balance - charged, held - releasing
        crossed = bool(charged and not alerted and threshold > 0 and balance - held < threshold)
        sql.execute(
            f"UPDATE {sql.table(Wallet)} SET balance = %s, held = %s, in_flight = in_flight - %s, "
            "low_balance_alerted = %s WHERE account_id = %s",
            [balance, held, 1 if in_flight and was_open else 0, bool(alerted or crossed),
             account_id],
        )  # fmt: skip
        ledger_row(
            account_id,
            LedgerKind.CHARGE,
            amount=-charged,
            held_change=-releasing,
            balance=balance,
            held=held,
            reference=reference,
            key=f"settle:{reference}",
            at=at,
        )
        record_usage(account_id, reference, usage, charged, shortfall, at)
        if crossed:
            from billing.jobs import low_balance_alert

            low_balance_alert.delay_on_commit(account_id)
    if not was_open:
        logger.warning("%s was settled after its hold had been released", reference)
    if shortfall:
        logger.warning("settle of %s ran short by %d micro-credits", reference, shortfall)
    return Settlement(charged, shortfall, WalletState(balance, held))


def _closed(hold_id: int) -> Settlement:
    hold = Hold.objects.get(pk=hold_id)
    return Settlement(hold.charged, hold.shortfall, wallet_state(hold.account_id), True)


def hold_release(*, reference: str, stale_before: datetime | None = None) -> bool:
    """Return a hold's credits untouched (the call failed: failed calls are free).
    False when the hold was already closed, or (``stale_before``) renewed since then."""
    now = timezone.now()
    with transaction.atomic():
        # The wallet is locked before the hold, as in hold_settle: one lock order, no deadlock.
        row = _hold_with_locked_wallet(reference)
        if row is None or row[4] != HoldStatus.OPEN:
            return False
        hold_id, account_id, amount, in_flight = row[:4]
        stale = " AND renewed_at < %s" if stale_before else ""
        claimed = sql.execute(
            f"UPDATE {sql.table(Hold)} SET status = %s, closed_at = %s "
            f"WHERE id = %s AND status = %s{stale} RETURNING id",
            [HoldStatus.RELEASED, now, hold_id, HoldStatus.OPEN,
             *([stale_before] if stale_before else [])],
        )  # fmt: skip
        if claimed is None:
            return False
        balance, held = sql.execute(
            f"UPDATE {sql.table(Wallet)} SET held = held - %s, in_flight = in_flight - %s "
            "WHERE account_id = %s RETURNING balance, held",
            [amount, 1 if in_flight else 0, account_id],
        )
        ledger_row(
            account_id,
            LedgerKind.RELEASE,
            held_change=-amount,
            balance=balance,
            held=held,
            reference=reference,
            key=f"release:{reference}",
            at=now,
        )
    return True


def holds_renew(*, references) -> list[str]:
    """Mark the holds of calls still running and of live leases as alive (their web process
    calls this every few seconds), so the stale sweep leaves them open; the references of
    those it renewed."""
    references = list(references)
    if not references:
        return []
    with transaction.atomic():
        # A hold being settled is locked by its batch: skip it rather than wait for the batch
        # (waiting, every other hold of the process would go unrenewed meanwhile).
        found = dict(
            Hold.objects.filter(reference__in=references, status=HoldStatus.OPEN)
            .exclude(kind=HoldKind.TASK)
            .select_for_update(skip_locked=True)
            .values_list("pk", "reference")
        )
        Hold.objects.filter(pk__in=found).update(renewed_at=timezone.now())
        return list(found.values())


def holds_release_stale(*, older_than: timedelta) -> int:
    """Release request and lease holds nobody renewed for ``older_than``: their web process died
    (or lost its database) mid-request. Task holds belong to their task, and are left alone."""
    cutoff = timezone.now() - older_than
    references = (
        Hold.objects.filter(status=HoldStatus.OPEN, renewed_at__lt=cutoff)
        .exclude(kind=HoldKind.TASK)
        .values_list("reference", flat=True)
    )
    # Each is released only if still unrenewed when its wallet is locked: a renewal that came
    # after this list was read wins.
    return sum(
        hold_release(reference=reference, stale_before=cutoff) for reference in list(references)
    )


# --- Leases: a web process's credit for a busy account's calls --------------------------------


class LeaseClosedError(Exception):
    """The lease's hold was released (as stale): a new lease takes its place."""


@dataclass(frozen=True)
class LeaseGrant:
    amount: int  # the lease's hold, after the change
    wallet: WalletState
    concurrency_limit: int


def lease_grow(*, account_id: int, reference: str, amount: int, step: str) -> LeaseGrant | None:
    """Add ``amount`` to the lease ``reference`` (opened if new), or None if the wallet does not
    have that much available. ``step`` names this growth (once per step). Raises
    ``LeaseClosedError`` if the lease was released meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        sql.insert(
            Hold,
            {"account_id": account_id, "api_key_id": None, "reference": reference,
             "kind": HoldKind.LEASE, "amount": 0, "status": HoldStatus.OPEN,
             "counts_in_flight": False, "charged": 0, "shortfall": 0, "created_at": now,
             "renewed_at": now},
            suffix="ON CONFLICT (reference) DO NOTHING",
        )  # fmt: skip
        row = sql.execute(
            f"UPDATE {sql.table(Wallet)} SET held = held + %s WHERE account_id = %s "
            "AND balance - held >= %s RETURNING balance, held, concurrency_limit",
            [amount, account_id, amount],
        )
        if row is None:
            transaction.set_rollback(True)  # no lease opened for nothing
            return None
        balance, held, concurrency_limit = row
        grown = sql.execute(
            f"UPDATE {sql.table(Hold)} SET amount = amount + %s, renewed_at = %s "
            "WHERE reference = %s AND status = %s RETURNING amount",
            [amount, now, reference, HoldStatus.OPEN],
        )
        if grown is None:  # released as stale: this lease is over, the caller opens a new one
            raise LeaseClosedError(reference)
        ledger_row(account_id, LedgerKind.HOLD, held_change=amount, balance=balance,
                   held=held, reference=reference, key=f"{reference}:{step}", at=now)  # fmt: skip
    return LeaseGrant(grown[0], WalletState(balance, held), concurrency_limit)


def lease_shrink(*, reference: str, amount: int, step: str) -> bool:
    """Give ``amount`` of an idle lease back to the wallet; all of it closes the lease."""
    now = timezone.now()
    with transaction.atomic():
        row = _hold_with_locked_wallet(reference)
        if row is None or row[4] != HoldStatus.OPEN:
            return False
        hold_id, account_id, held_amount = row[:3]
        amount = min(amount, held_amount)
        closing = amount == held_amount
        sql.execute(
            f"UPDATE {sql.table(Hold)} SET amount = amount - %s, status = %s, closed_at = %s "
            "WHERE id = %s",
            [0 if closing else amount, HoldStatus.RELEASED if closing else HoldStatus.OPEN,
             now if closing else None, hold_id],
        )  # fmt: skip
        balance, held = sql.execute(
            f"UPDATE {sql.table(Wallet)} SET held = held - %s WHERE account_id = %s "
            "RETURNING balance, held",
            [amount, account_id],
        )
        ledger_row(account_id, LedgerKind.RELEASE, held_change=-amount, balance=balance,
                   held=held, reference=reference, key=f"{reference}:{step}", at=now)  # fmt: skip
    return True
