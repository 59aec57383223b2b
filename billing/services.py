"""The wallet and its balance: top-ups, staff adjustments, refunds, the low-balance threshold,
and the wallet's figures (``WalletState``). The other writes to the books build on it: holds and
leases (billing/holds.py), settlement in batches (billing/batches.py), usage records and rollups
(billing/usage.py) and redemption codes (billing/redemption.py).

Each operation is one transaction and idempotent: its ledger entry has a unique idempotency key
derived from what it refers to (a request, a task, a code), and state changes that can race are
conditional UPDATEs, so a retry, a duplicate worker or a concurrent caller changes nothing twice.
No row lock is held across an upstream call: a hold is placed, the call happens, then the hold
is settled or released in a new short transaction.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import Account, User
from accounts.services import audit_record
from billing.errors import BillingError, InsufficientBalanceError
from billing.models import LedgerEntry, LedgerKind, Wallet
from billing.signals import wallet_credited
from core.money import MAX_MICROS, format_credits

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


def change_balance(
    *,
    account: Account,
    kind: str,
    amount: int,
    reference: str,
    idempotency_key: str,
    actor: User | None = None,
    description: str = "",
    at: datetime | None = None,
) -> LedgerEntry:
    """Add ``amount`` (negative to take) to the balance, once per idempotency key. ``at`` dates
    an entry recorded after the fact (the demo's welcome credit, before its history)."""
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
        if amount > 0:
            wallet_credited.send(
                sender=Wallet, account_id=wallet.account_id, available=wallet.available
            )
        return _ledger(
            wallet,
            kind,
            amount=amount,
            reference=reference,
            key=idempotency_key,
            created_by=actor,
            description=description,
            created_at=at or timezone.now(),
        )


def wallet_top_up(
    *,
    account: Account,
    amount: int,
    reference: str,
    actor: User | None = None,
    description="",
    at: datetime | None = None,
) -> LedgerEntry:
    """Credits bought or granted. ``reference`` (a payment id, say) makes it happen once."""
    if amount <= 0:
        raise BillingError("A top-up must be more than zero.")
    return change_balance(
        account=account,
        kind=LedgerKind.TOPUP,
        amount=amount,
        reference=reference,
        idempotency_key=f"topup:{reference}",
        actor=actor,
        description=description,
        at=at,
    )


def wallet_admin_adjust(*, account: Account, amount: int, actor: User, note: str) -> LedgerEntry:
    """A staff credit (amount > 0) or debit (< 0), recorded with who and why."""
    if not note.strip():
        raise BillingError("Say why: the note is kept in the ledger and the audit log.")
    kind = LedgerKind.ADMIN_CREDIT if amount > 0 else LedgerKind.ADMIN_DEBIT
    reference = f"admin:{secrets.token_hex(8)}"
    with transaction.atomic():
        entry = change_balance(
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
    return change_balance(
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


def wallet_set_statement_emails(*, account: Account, enabled: bool, actor: User) -> Wallet:
    """Opt the account's owners in to (or out of) last month's statement on the 1st. Opting in
    starts with the month in progress: last month's is not sent out of turn."""
    from billing.statements import current_month, previous_month

    with transaction.atomic():
        wallet = _locked_wallet(account.pk)
        wallet.statement_emails = enabled
        if enabled:
            last = previous_month(current_month(account))
            wallet.statement_sent_for = max(wallet.statement_sent_for or last, last)
        wallet.save(update_fields=["statement_emails", "statement_sent_for"])
        audit_record(
            account=account, actor=actor, action="wallet.statement_emails",
            target="on" if enabled else "off",
        )  # fmt: skip
    return wallet


# --- The wallet's figures --------------------------------------------------------------------


@dataclass(frozen=True)
class WalletState:
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


def wallet_state(account_id: int) -> WalletState:
    balance, held = Wallet.objects.filter(account_id=account_id).values_list(
        "balance", "held"
    ).first() or (0, 0)
    return WalletState(balance, held)
