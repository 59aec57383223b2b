"""A settlement batch (billing/batches.py) with every kind of item at once: calls charged from
an open lease, a call whose lease was released meanwhile, a call settling its own hold, a failed
call's release, and a call already recorded. On PostgreSQL the batch is sent in pipeline mode
(billing/sql.py): the figures must be the same as statement by statement."""

import pytest
from django.db import IntegrityError
from django.utils import timezone

from billing import holds
from billing.batches import Release, usage_batch_commit
from billing.invariants import wallet_problems
from billing.models import Hold, HoldStatus, LedgerEntry, UsageRecord, Wallet
from billing.services import WalletState
from billing.usage import Charge, UsageFacts
from tests.factories import AIModelFactory, fund

# Committed for real, as in a web process (not a savepoint of the test's transaction).
pytestmark = pytest.mark.django_db(transaction=True)
M = 1_000_000


def lease(account, reference: str, amount: int) -> str:
    grant = holds.lease_grow(account_id=account.pk, reference=reference, amount=amount, step="0")
    assert grant is not None
    return reference


def test_a_mixed_batch_writes_exact_books(world):
    model = AIModelFactory()
    usage = UsageFacts(model_id=model.pk, family="text", protocol="openai")
    now = timezone.now()
    fund(world.account, 10)
    fund(world.outsider_account, 10)
    mine = world.account.pk
    open_lease = lease(world.account, "lease_open", 5 * M)
    gone_lease = lease(world.outsider_account, "lease_gone", 2 * M)
    holds.hold_release(reference=gone_lease)  # as the stale sweep would
    holds.hold_place(account_id=mine, reference="req_own", amount=2 * M)
    holds.hold_place(account_id=mine, reference="req_failed", amount=M)
    usage_batch_commit(
        batch="batch_before", charges=[Charge("req_done", mine, M, usage, now, open_lease)],
        releases=[],
    )  # fmt: skip

    results = usage_batch_commit(
        batch="batch_1",
        charges=[
            Charge("req_a", mine, M, usage, now, open_lease),
            Charge("req_b", mine, 2 * M, usage, now, open_lease),
            Charge("req_done", mine, M, usage, now, open_lease),  # already recorded: skipped
            Charge("req_c", world.outsider_account.pk, 3 * M, usage, now, gone_lease),
            Charge("req_own", mine, M // 2, usage, now),
        ],
        releases=[Release("req_failed", mine)],
    )

    assert {ref: (s.charged, s.shortfall) for ref, s in results.items()} == {
        "req_a": (M, 0),
        "req_b": (2 * M, 0),
        "req_c": (3 * M, 0),  # from the wallet's available credit, the lease being gone
        "req_own": (M // 2, 0),
    }
    # One charge entry per account and lease, naming the batch and summing its usage rows.
    charges = LedgerEntry.objects.filter(reference="batch_1", kind="charge")
    assert sorted(charges.values_list("account_id", "amount", "held_change")) == sorted(
        [(mine, -3 * M, -3 * M), (world.outsider_account.pk, -3 * M, 0)]
    )
    assert UsageRecord.objects.filter(request_id="req_done").count() == 1
    recorded = UsageRecord.objects.filter(batch="batch_1").values_list("request_id", flat=True)
    assert set(recorded) == {"req_a", "req_b", "req_c"}
    assert Hold.objects.get(reference=open_lease).amount == 5 * M - 4 * M
    assert Hold.objects.get(reference="req_own").status == HoldStatus.SETTLED
    assert Hold.objects.get(reference="req_failed").status == HoldStatus.RELEASED
    wallet = Wallet.objects.get(account=world.account)
    # 10 funded, 1 + 3 from the lease, 0.5 own; held: what is left of the lease.
    assert (wallet.balance, wallet.held) == (10 * M - 4 * M - M // 2, M)
    # The wallet as the lease charges left it: before the own hold's settle and the release.
    assert results["req_a"].wallet == WalletState(6 * M, 4 * M)
    other = Wallet.objects.get(account=world.outsider_account)
    assert (other.balance, other.held) == (7 * M, 0)
    assert wallet_problems(mine) == [] and wallet_problems(world.outsider_account.pk) == []


def test_a_lease_too_small_for_its_calls_charges_the_wallet_and_records_the_shortfall(world):
    model = AIModelFactory()
    usage = UsageFacts(model_id=model.pk, family="text", protocol="openai")
    fund(world.account, 3)
    small = lease(world.account, "lease_small", M)
    holds.hold_release(reference=small)
    holds.hold_place(account_id=world.account.pk, reference="req_other", amount=2 * M)
    results = usage_batch_commit(
        batch="batch_short",
        charges=[Charge("req_big", world.account.pk, 4 * M, usage, timezone.now(), small)],
        releases=[],
    )
    # 3 funded, 2 held by another call: 1 available, 3 short.
    assert (results["req_big"].charged, results["req_big"].shortfall) == (M, 3 * M)
    record = UsageRecord.objects.get(request_id="req_big")
    assert (record.credits, record.shortfall) == (M, 3 * M)
    assert wallet_problems(world.account.pk) == []


def test_a_failing_statement_rolls_the_whole_batch_back(world):
    """In pipeline mode an error surfaces only when the pipeline is synced; the batch must still
    fail as a whole, as Django's error, and leave the connection usable."""
    model = AIModelFactory()
    usage = UsageFacts(model_id=model.pk, family="text", protocol="openai")
    fund(world.account, 10)
    open_lease = lease(world.account, "lease_x", 5 * M)
    before = list(LedgerEntry.objects.values_list("pk", flat=True))
    twice = Charge("req_twice", world.account.pk, M, usage, timezone.now(), open_lease)
    with pytest.raises(IntegrityError):  # two usage rows for one request id
        usage_batch_commit(batch="batch_bad", charges=[twice, twice], releases=[])
    assert list(LedgerEntry.objects.values_list("pk", flat=True)) == before
    assert not UsageRecord.objects.filter(request_id="req_twice").exists()
    assert Hold.objects.get(reference=open_lease).amount == 5 * M
    assert Wallet.objects.get(account=world.account).held == 5 * M
    # The connection is usable, and the next batch is written.
    usage_batch_commit(batch="batch_good", charges=[twice], releases=[])
    assert Wallet.objects.get(account=world.account).balance == 9 * M
    assert wallet_problems(world.account.pk) == []
