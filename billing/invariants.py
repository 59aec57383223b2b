"""The invariants of a wallet's books, checked against the database: what tests, the soak run
and an operator's audit ask of every account after any sequence of calls, kills and outages."""

from django.db.models import Q, Sum

from billing.models import Hold, HoldStatus, LedgerEntry, LedgerKind, UsageRecord, Wallet


def wallet_problems(account_id: int) -> list[str]:
    """What is wrong with a wallet's books, if anything (used by tests and the soak run)."""
    problems = []
    wallet = Wallet.objects.filter(account_id=account_id).first()
    if wallet is None:
        return problems
    ledger = LedgerEntry.objects.filter(account_id=account_id).aggregate(
        amount=Sum("amount"), held=Sum("held_change")
    )
    open_holds = Hold.objects.filter(account_id=account_id, status=HoldStatus.OPEN).aggregate(
        total=Sum("amount")
    )["total"]
    charges = -(
        LedgerEntry.objects.filter(account_id=account_id, kind=LedgerKind.CHARGE).aggregate(
            total=Sum("amount")
        )["total"]
        or 0
    )
    usage = UsageRecord.objects.filter(account_id=account_id).aggregate(total=Sum("credits"))[
        "total"
    ]
    if wallet.balance != (ledger["amount"] or 0):
        problems.append(f"balance {wallet.balance} != ledger sum {ledger['amount']}")
    if wallet.held != (ledger["held"] or 0) or wallet.held != (open_holds or 0):
        problems.append(f"held {wallet.held} != ledger {ledger['held']} / open {open_holds}")
    if wallet.available < 0:
        problems.append(f"available {wallet.available} < 0")
    if charges != (usage or 0):
        problems.append(f"charges {charges} != usage credits {usage}")
    # Each settlement batch's ledger entry charges exactly its usage rows.
    batches = dict(
        UsageRecord.objects.filter(account_id=account_id)
        .exclude(batch="")
        .values_list("batch")
        .annotate(total=Sum("credits"))
    )
    entries = dict(
        LedgerEntry.objects.filter(
            account_id=account_id, kind=LedgerKind.CHARGE, reference__in=list(batches)
        )
        .values_list("reference")
        .annotate(total=Sum("amount"))
    )
    for batch, total in batches.items():
        if -(entries.get(batch) or 0) != total:
            problems.append(f"batch {batch} charged {-(entries.get(batch) or 0)} for {total}")
    if (
        Hold.objects.filter(account_id=account_id)
        .filter(~Q(status=HoldStatus.OPEN))
        .filter(closed_at__isnull=True)
        .exists()
    ):
        problems.append("a closed hold has no closing time")
    return problems
