"""Every write to wallets, the ledger, holds, usage and redemption codes.

Each operation is one transaction and idempotent: its ledger entry has a unique idempotency key
derived from what it refers to (a request, a task, a code), and state changes that can race are
conditional UPDATEs, so a retry, a duplicate worker or a concurrent caller changes nothing twice.
No row lock is held across an upstream call: a hold is placed, the call happens, then the hold
is settled or released in a new short transaction.
"""

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Account, User
from accounts.services import audit_record
from billing.errors import (
    BillingError,
    InsufficientBalanceError,
    RedemptionError,
)
from billing.models import (
    Hold,
    HoldKind,
    HoldStatus,
    KeySpend,
    KeyTotal,
    LedgerEntry,
    LedgerKind,
    RedemptionBatch,
    RedemptionCode,
    UsageRecord,
    UsageRollup,
    Wallet,
)
from core.money import MAX_MICROS, format_credits

logger = logging.getLogger(__name__)


# --- Wallet and balance changes --------------------------------------------------------------


def wallet_open(*, account: Account) -> Wallet:
    """The account's wallet (created empty with the account)."""
    wallet, _ = Wallet.objects.get_or_create(account=account)
    return wallet


def _locked_wallet(account_id: int) -> Wallet:
    wallet, _ = Wallet.objects.select_for_update().get_or_create(account_id=account_id)
    return wallet


def _ledger(wallet: Wallet, kind: str, *, amount=0, held_change=0, reference="", key="", **extra):
    return LedgerEntry.objects.create(
        account_id=wallet.account_id,
        kind=kind,
        amount=amount,
        held_change=held_change,
        balance_after=wallet.balance,
        held_after=wallet.held,
        reference=reference,
        idempotency_key=key,
        **extra,
    )


def _change_balance(
    *,
    account: Account,
    kind: str,
    amount: int,
    reference: str,
    idempotency_key: str,
    actor: User | None = None,
    description: str = "",
) -> LedgerEntry:
    """Add ``amount`` (negative to take) to the balance, once per idempotency key."""
    if not isinstance(amount, int) or amount == 0 or abs(amount) > MAX_MICROS:
        raise BillingError("The amount must be a whole number of micro-credits, not zero.")
    with transaction.atomic():
        wallet = _locked_wallet(account.pk)
        # Checked under the wallet's lock, so a concurrent duplicate finds the first one.
        existing = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
        if amount < 0 and wallet.available < -amount:
            raise InsufficientBalanceError(
                f"The wallet has {format_credits(wallet.available)} credits available."
            )
        wallet.balance += amount
        if wallet.low_balance_alerted and not wallet.is_low:
            wallet.low_balance_alerted = False  # the next crossing alerts again
        wallet.save(update_fields=["balance", "low_balance_alerted"])
        return _ledger(
            wallet,
            kind,
            amount=amount,
            reference=reference,
            key=idempotency_key,
            created_by=actor,
            description=description,
        )


def wallet_top_up(
    *, account: Account, amount: int, reference: str, actor: User | None = None, description=""
) -> LedgerEntry:
    """Credits bought or granted. ``reference`` (a payment id, say) makes it happen once."""
    if amount <= 0:
        raise BillingError("A top-up must be more than zero.")
    return _change_balance(
        account=account,
        kind=LedgerKind.TOPUP,
        amount=amount,
        reference=reference,
        idempotency_key=f"topup:{reference}",
        actor=actor,
        description=description,
    )


def wallet_admin_adjust(*, account: Account, amount: int, actor: User, note: str) -> LedgerEntry:
    """A staff credit (amount > 0) or debit (< 0), recorded with who and why."""
    if not note.strip():
        raise BillingError("Say why: the note is kept in the ledger and the audit log.")
    kind = LedgerKind.ADMIN_CREDIT if amount > 0 else LedgerKind.ADMIN_DEBIT
    reference = f"admin:{secrets.token_hex(8)}"
    with transaction.atomic():
        entry = _change_balance(
            account=account,
            kind=kind,
            amount=amount,
            reference=reference,
            idempotency_key=reference,
            actor=actor,
            description=note.strip()[:200],
        )
        audit_record(
            account=account,
            actor=actor,
            action=f"wallet.{kind}",
            target=f"{format_credits(abs(amount))} credits",
            note=note.strip(),
        )
    return entry


def refund(
    *, account: Account, amount: int, reference: str, actor: User | None = None, description=""
) -> LedgerEntry:
    """Give credits back for something already charged; once per ``reference``."""
    if amount <= 0:
        raise BillingError("A refund must be more than zero.")
    return _change_balance(
        account=account,
        kind=LedgerKind.REFUND,
        amount=amount,
        reference=reference,
        idempotency_key=f"refund:{reference}",
        actor=actor,
        description=description,
    )


def wallet_set_low_balance_threshold(*, account: Account, amount: int, actor: User) -> Wallet:
    with transaction.atomic():
        wallet = _locked_wallet(account.pk)
        wallet.low_balance_threshold = amount
        wallet.low_balance_alerted = wallet.is_low  # no alert for a crossing set by hand
        wallet.save(update_fields=["low_balance_threshold", "low_balance_alerted"])
        audit_record(
            account=account,
            actor=actor,
            action="wallet.threshold",
            target=f"{format_credits(amount)} credits",
        )
    return wallet


# --- Holds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalletState:
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


# --- Holds: the hot path ---------------------------------------------------------------------
# Every data-plane call places a hold and settles or releases it, so these run as a few plain SQL
# statements (portable between PostgreSQL and SQLite) rather than through the ORM.


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _db_value(value):
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


def _execute(sql: str, params=()) -> tuple | None:
    """Run one statement; its first row (RETURNING or SELECT), if any."""
    with connection.cursor() as cursor:
        cursor.execute(sql, [_db_value(p) for p in params])
        return cursor.fetchone() if cursor.description else None


def _insert(model, values: dict, *, suffix: str = "") -> tuple | None:
    names = ", ".join(connection.ops.quote_name(c) for c in values)
    marks = ", ".join(["%s"] * len(values))
    return _execute(
        f"INSERT INTO {_table(model)} ({names}) VALUES ({marks}) {suffix}", list(values.values())
    )


def _ledger_row(account_id, kind, *, amount=0, held_change=0, balance, held, reference, key, at):
    _insert(
        LedgerEntry,
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
        },
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
) -> WalletState:
    """Reserve ``amount`` for ``reference``, or raise if the wallet cannot cover it, too many
    requests are in flight, or ``key_limits`` (the key's quota and caps: anything
    ``billing.limits.key_limits_check`` takes) are reached. Placing the same reference twice
    reserves once.

    The key's limits are checked after the wallet's row is locked, in the same transaction: every
    hold of an account's keys takes that lock, so two concurrent calls cannot both see the room
    that only one of them fits in.
    """
    if amount < 0:
        raise ValueError("A hold cannot be negative.")
    in_flight = 1 if counts_in_flight else 0
    now = timezone.now()
    with transaction.atomic():
        created = _insert(
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
        row = _execute(
            f"UPDATE {_table(Wallet)} SET held = held + %s, in_flight = in_flight + %s "
            "WHERE account_id = %s AND balance - held >= %s "
            "AND (%s = 0 OR in_flight < concurrency_limit) RETURNING balance, held",
            [amount, in_flight, account_id, amount, in_flight],
        )
        if row is None:
            _raise_hold_refusal(account_id, amount)  # rolls the hold back
        if key_limits is not None:
            from billing.limits import key_limits_check  # builds on these services

            # Raises (rolling the hold back) when the key is at a limit, not counting this hold.
            key_limits_check(key_limits, now=now, pending=amount)
        state = WalletState(*row)
        _ledger_row(
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


def wallet_state(account_id: int) -> WalletState:
    balance, held = Wallet.objects.filter(account_id=account_id).values_list(
        "balance", "held"
    ).first() or (0, 0)
    return WalletState(balance, held)


@dataclass(frozen=True)
class UsageFacts:
    """What a billed call did, for its usage record and the rollups."""

    model_id: int
    family: str
    protocol: str
    api_key_id: int | None = None
    group_id: int | None = None
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    seconds: int = 0
    latency_ms: int | None = None
    ttft_ms: int | None = None


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
    wallet = _execute(
        "SELECT balance, held, low_balance_threshold, low_balance_alerted FROM "
        f"{_table(Wallet)} WHERE account_id = (SELECT account_id FROM {_table(Hold)} "
        f"WHERE reference = %s){lock}",
        [reference],
    )
    if wallet is None:
        return None
    hold = _execute(
        f"SELECT id, account_id, amount, counts_in_flight, status FROM {_table(Hold)} "
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
        claimed = _execute(
            f"UPDATE {_table(Hold)} SET status = %s, charged = %s, shortfall = %s, "
            "closed_at = COALESCE(closed_at, %s) WHERE id = %s AND status = %s RETURNING id",
            [HoldStatus.SETTLED, charged, shortfall, at, hold_id, status],
        )
        if claimed is None:  # cannot happen: the hold was read under the wallet's lock
            return _closed(hold_id)
        balance, held = balance - charged, held - releasing
        crossed = bool(charged and not alerted and threshold > 0 and balance - held < threshold)
        _execute(
            f"UPDATE {_table(Wallet)} SET balance = %s, held = %s, in_flight = in_flight - %s, "
            "low_balance_alerted = %s WHERE account_id = %s",
            [balance, held, 1 if in_flight and was_open else 0, bool(alerted or crossed),
             account_id],
        )  # fmt: skip
        _ledger_row(
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
        _record_usage(account_id, reference, usage, charged, shortfall, at)
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
        claimed = _execute(
            f"UPDATE {_table(Hold)} SET status = %s, closed_at = %s "
            f"WHERE id = %s AND status = %s{stale} RETURNING id",
            [HoldStatus.RELEASED, now, hold_id, HoldStatus.OPEN,
             *([stale_before] if stale_before else [])],
        )  # fmt: skip
        if claimed is None:
            return False
        balance, held = _execute(
            f"UPDATE {_table(Wallet)} SET held = held - %s, in_flight = in_flight - %s "
            "WHERE account_id = %s RETURNING balance, held",
            [amount, 1 if in_flight else 0, account_id],
        )
        _ledger_row(
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
        _insert(
            Hold,
            {"account_id": account_id, "api_key_id": None, "reference": reference,
             "kind": HoldKind.LEASE, "amount": 0, "status": HoldStatus.OPEN,
             "counts_in_flight": False, "charged": 0, "shortfall": 0, "created_at": now,
             "renewed_at": now},
            suffix="ON CONFLICT (reference) DO NOTHING",
        )  # fmt: skip
        row = _execute(
            f"UPDATE {_table(Wallet)} SET held = held + %s WHERE account_id = %s "
            "AND balance - held >= %s RETURNING balance, held, concurrency_limit",
            [amount, account_id, amount],
        )
        if row is None:
            transaction.set_rollback(True)  # no lease opened for nothing
            return None
        balance, held, concurrency_limit = row
        grown = _execute(
            f"UPDATE {_table(Hold)} SET amount = amount + %s, renewed_at = %s "
            "WHERE reference = %s AND status = %s RETURNING amount",
            [amount, now, reference, HoldStatus.OPEN],
        )
        if grown is None:  # released as stale: this lease is over, the caller opens a new one
            raise LeaseClosedError(reference)
        _ledger_row(account_id, LedgerKind.HOLD, held_change=amount, balance=balance,
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
        _execute(
            f"UPDATE {_table(Hold)} SET amount = amount - %s, status = %s, closed_at = %s "
            "WHERE id = %s",
            [0 if closing else amount, HoldStatus.RELEASED if closing else HoldStatus.OPEN,
             now if closing else None, hold_id],
        )  # fmt: skip
        balance, held = _execute(
            f"UPDATE {_table(Wallet)} SET held = held - %s WHERE account_id = %s "
            "RETURNING balance, held",
            [amount, account_id],
        )
        _ledger_row(account_id, LedgerKind.RELEASE, held_change=-amount, balance=balance,
                    held=held, reference=reference, key=f"{reference}:{step}", at=now)  # fmt: skip
    return True


# --- Settlement in batches -------------------------------------------------------------------


@dataclass(frozen=True)
class Charge:
    """One answered call to write down: its usage, and what it costs. ``lease`` names the lease
    it was admitted against; without one, it settles its own hold (``reference``)."""

    reference: str
    account_id: int
    charge: int
    usage: UsageFacts
    at: datetime
    lease: str = ""


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
            _execute("SET LOCAL synchronous_commit TO OFF")
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
    _record_usage_batch(batch, records)
    return results


def _charge_lease(batch, account_id, lease, total, at) -> tuple[int, WalletState]:
    """Take ``total`` from the lease's hold (and from the wallet's balance and held amount), in
    one ledger entry for the batch. If the lease was released meanwhile (its process looked
    dead), take it from what the wallet has available."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    balance, held, threshold, alerted = _execute(
        "SELECT balance, held, low_balance_threshold, low_balance_alerted FROM "
        f"{_table(Wallet)} WHERE account_id = %s{lock}",
        [account_id],
    )
    taken = _execute(
        f"UPDATE {_table(Hold)} SET amount = amount - %s, charged = charged + %s "
        "WHERE reference = %s AND status = %s AND amount >= %s RETURNING id",
        [total, total, lease, HoldStatus.OPEN, total],
    )
    from_hold = total if taken else 0
    charged = total if taken else max(min(total, balance - held), 0)
    balance, held = balance - charged, held - from_hold
    crossed = bool(charged and not alerted and threshold > 0 and balance - held < threshold)
    _execute(
        f"UPDATE {_table(Wallet)} SET balance = %s, held = %s, low_balance_alerted = %s "
        "WHERE account_id = %s",
        [balance, held, bool(alerted or crossed), account_id],
    )
    _ledger_row(account_id, LedgerKind.CHARGE, amount=-charged, held_change=-from_hold,
                balance=balance, held=held, reference=batch,
                key=f"{batch}:{account_id}:{lease}", at=at)  # fmt: skip
    if crossed:
        from billing.jobs import low_balance_alert

        low_balance_alert.delay_on_commit(account_id)
    return charged, WalletState(balance, held)


# --- Usage -----------------------------------------------------------------------------------

_ROLLUP_FIELDS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "images",
    "seconds",
    "credits",
)


def _record_usage(account_id, reference, usage: UsageFacts, charged, shortfall, at: datetime):
    call = Charge(reference, account_id, charged, usage, at)
    _record_usage_batch("", [(call, charged, shortfall)])


def _record_usage_batch(batch: str, records: list[tuple["Charge", int, int]]) -> None:
    """Usage rows for (call, charged, shortfall), in one INSERT, and the rollups and key spend
    they add to, summed per row they touch (one upsert each)."""
    if not records:
        return
    rows = []
    rollups: dict[tuple, list[int]] = {}
    spend: dict[tuple, int] = {}
    totals: dict[int, int] = {}
    for call, charged, shortfall in records:
        usage, at = call.usage, call.at
        rows.append({
            "request_id": call.reference, "batch": batch, "account_id": call.account_id,
            "api_key_id": usage.api_key_id, "group_id": usage.group_id,
            "model_id": usage.model_id, "family": usage.family, "protocol": usage.protocol,
            "stream": usage.stream, "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens, "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens, "images": usage.images,
            "seconds": usage.seconds, "credits": charged, "shortfall": shortfall,
            "latency_ms": usage.latency_ms, "ttft_ms": usage.ttft_ms, "created_at": at,
        })  # fmt: skip
        hour = at.replace(minute=0, second=0, microsecond=0)
        sums = rollups.setdefault(
            (call.account_id, usage.api_key_id, usage.model_id, hour, usage.family), [0] * 8
        )
        amounts = (1, usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                   usage.cache_write_tokens, usage.images, usage.seconds, charged)  # fmt: skip
        for n, amount in enumerate(amounts):
            sums[n] += amount
        if usage.api_key_id is not None and charged:
            bucket = at - timedelta(
                minutes=at.minute % 5, seconds=at.second, microseconds=at.microsecond
            )
            spend[(usage.api_key_id, bucket)] = spend.get((usage.api_key_id, bucket), 0) + charged
            totals[usage.api_key_id] = totals.get(usage.api_key_id, 0) + charged
    _insert_rows(UsageRecord, rows)
    rollup_rows = [
        {"account_id": a, "api_key_id": k, "model_id": m, "hour": h, "family": f,
         **dict(zip(_ROLLUP_FIELDS, sums, strict=True))}
        for (a, k, m, h, f), sums in rollups.items()
    ]  # fmt: skip
    _upsert_add(
        UsageRollup, ("account_id", "api_key_id", "model_id", "hour"), rollup_rows,
        amounts=_ROLLUP_FIELDS,
    )  # fmt: skip
    _upsert_add(
        KeySpend,
        ("api_key_id", "bucket"),
        [{"api_key_id": k, "bucket": b, "credits": c} for (k, b), c in spend.items()],
        amounts=("credits",),
    )
    _upsert_add(
        KeyTotal,
        ("api_key_id",),
        [{"api_key_id": k, "credits": c} for k, c in totals.items()],
        amounts=("credits",),
    )


def _insert_rows(model, rows: list[dict], *, suffix: str = "") -> None:
    """One INSERT of many rows (all with the same columns)."""
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
    values = [_db_value(row[c]) for row in rows for c in columns]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_table(model)} ({names}) VALUES {', '.join([marks] * len(rows))} "
            f"{suffix}",
            values,
        )


def _upsert_add(model, keys: tuple, rows: list[dict], *, amounts) -> None:
    """INSERT rows, or add their ``amounts`` to the rows already there (one statement; ``rows``
    must not repeat a key)."""
    table = _table(model)
    quote = connection.ops.quote_name
    conflict = ", ".join(quote(c) for c in keys)
    updates = ", ".join(f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in amounts)
    _insert_rows(model, rows, suffix=f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}")


def key_spend_prune(*, older_than: timedelta = timedelta(days=8)) -> int:
    deleted, _ = KeySpend.objects.filter(bucket__lt=timezone.now() - older_than).delete()
    return deleted


# --- Redemption codes ------------------------------------------------------------------------

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def _normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def code_digest(code: str) -> str:
    return hmac.new(
        settings.BYTESPIKE_KEY_PEPPER.encode(), _normalise_code(code).encode(), hashlib.sha256
    ).hexdigest()


def redemption_batch_create(
    *, name: str, amount: int, count: int, expires_at: datetime | None, actor: User
) -> tuple[RedemptionBatch, list[str]]:
    """Generate ``count`` codes worth ``amount`` each; the plaintext codes are returned once."""
    if amount <= 0 or amount > MAX_MICROS:
        raise BillingError("Each code must be worth more than zero and less than a billion.")
    if not 1 <= count <= 10_000:
        raise BillingError("Generate between 1 and 10,000 codes at a time.")
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))
        codes.append("BYTS-" + "-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    with transaction.atomic():
        batch = RedemptionBatch.objects.create(
            name=name, amount=amount, count=count, expires_at=expires_at, created_by=actor
        )
        RedemptionCode.objects.bulk_create(
            RedemptionCode(batch=batch, digest=code_digest(code), hint=code[-4:]) for code in codes
        )
    return batch, codes


def redeem_code(*, account: Account, code: str, actor: User) -> LedgerEntry:
    """Credit the wallet with the code's amount. A code works once, even when two redeem it at
    the same moment: only one conditional UPDATE can claim it."""
    now = timezone.now()
    found = RedemptionCode.objects.select_related("batch").filter(digest=code_digest(code)).first()
    if found is None:
        raise RedemptionError("That code is not valid. Check it and try again.")
    if found.redeemed_at is not None:
        raise RedemptionError("That code has already been used.")
    if found.batch.expires_at is not None and found.batch.expires_at <= now:
        raise RedemptionError("That code has expired.")
    with transaction.atomic():
        claimed = RedemptionCode.objects.filter(pk=found.pk, redeemed_at__isnull=True).update(
            redeemed_at=now, redeemed_by=actor, account=account
        )
        if not claimed:
            raise RedemptionError("That code has already been used.")
        entry = _change_balance(
            account=account,
            kind=LedgerKind.REDEEM,
            amount=found.batch.amount,
            reference=f"code …{found.hint}",
            idempotency_key=f"redeem:{found.pk}",
            actor=actor,
            description=found.batch.name,
        )
        audit_record(
            account=account,
            actor=actor,
            action="wallet.redeem",
            target=f"code …{found.hint} ({format_credits(found.batch.amount)} credits)",
        )
    return entry
