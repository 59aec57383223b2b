"""Races on PostgreSQL with real threads: each thread has its own connection and transaction."""

import pytest
from django.utils import timezone

from billing import errors, holds, redemption, services
from billing.batches import usage_batch_commit
from billing.invariants import wallet_problems
from billing.models import Hold, LedgerEntry, UsageRecord, Wallet
from billing.usage import Charge, UsageFacts
from tests.factories import AIModelFactory, UserFactory, fund
from tests.races import race

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
M = 1_000_000


def test_fifty_concurrent_holds_against_a_wallet_that_covers_ten(world):
    fund(world.account, 10)
    Wallet.objects.filter(account=world.account).update(concurrency_limit=100)
    results = race(
        lambda i: holds.hold_place(account_id=world.account.pk, reference=f"req_{i}", amount=M),
        50,
    )
    placed = [r for r in results if isinstance(r, services.WalletState)]
    refused = [r for r in results if isinstance(r, errors.InsufficientBalanceError)]
    assert (len(placed), len(refused)) == (10, 40)
    assert all(state.available >= 0 for state in placed)
    wallet = Wallet.objects.get(account=world.account)
    assert (wallet.held, wallet.available) == (10 * M, 0)
    assert Hold.objects.count() == 10
    assert wallet_problems(world.account.pk) == []


def test_twenty_concurrent_redemptions_of_one_code_give_one_top_up(world):
    staff = UserFactory(is_staff=True)
    _, (code,) = redemption.redemption_batch_create(
        name="promo", amount=5 * M, count=1, expires_at=None, actor=staff
    )
    results = race(
        lambda i: redemption.redeem_code(account=world.account, code=code, actor=world.owner), 20
    )
    entries = [r for r in results if isinstance(r, LedgerEntry)]
    assert len(entries) == 1
    assert all(
        isinstance(r, errors.RedemptionError) for r in results if not isinstance(r, LedgerEntry)
    )
    assert Wallet.objects.get(account=world.account).balance == 5 * M
    assert LedgerEntry.objects.filter(kind="redeem").count() == 1


def test_concurrent_settles_and_releases_of_one_hold_charge_once(world):
    """Settles and releases race: at most one release, and exactly one settle charges (a settle
    after a release still charges what was used: issue 11)."""
    model = AIModelFactory()
    fund(world.account, 20)
    usage = UsageFacts(model_id=model.pk, family="text", protocol="openai")
    for round_ in range(10):
        reference = f"req_race_{round_}"
        holds.hold_place(account_id=world.account.pk, reference=reference, amount=2 * M)
        results = race(
            lambda i, ref=reference: (
                holds.hold_settle(reference=ref, charge=M, usage=usage)
                if i % 2
                else holds.hold_release(reference=ref)
            ),
            6,
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        hold = Hold.objects.get(reference=reference)
        settled = [r for r in results if isinstance(r, holds.Settlement) and not r.already_closed]
        released = [r for r in results if r is True]
        assert (len(settled), hold.status) == (1, "settled")
        assert len(released) <= 1
        assert UsageRecord.objects.filter(request_id=reference).count() == 1
    assert wallet_problems(world.account.pk) == []
    assert Wallet.objects.get(account=world.account).in_flight == 0


def test_concurrent_top_ups_with_one_reference_credit_once(world):
    results = race(
        lambda i: services.wallet_top_up(account=world.account, amount=M, reference="pay_same"),
        10,
    )
    assert len({r.pk for r in results if isinstance(r, LedgerEntry)}) == 1
    assert Wallet.objects.get(account=world.account).balance == M


def test_batches_over_the_same_accounts_in_opposite_orders_do_not_deadlock(world):
    """Two processes' settlement batches: one settles account A's call hold and charges account
    B's lease, the other the reverse. Each batch locks its wallets in account order first."""
    model = AIModelFactory()
    accounts = [world.account, world.outsider_account]
    for account in accounts:
        fund(account, 100)
    usage = UsageFacts(model_id=model.pk, family="text", protocol="openai")
    failures = []
    for round_ in range(10):
        batches = []
        for i, (mine, leased) in enumerate([accounts, accounts[::-1]]):
            call, lease = f"req_{round_}_{i}", f"lease_{round_}_{i}"
            holds.hold_place(account_id=mine.pk, reference=call, amount=M)
            holds.lease_grow(account_id=leased.pk, reference=lease, amount=M, step="grow1")
            batches.append([
                Charge(call, mine.pk, M, usage, timezone.now()),
                Charge(f"req_{round_}_{i}_leased", leased.pk, M, usage, timezone.now(), lease),
            ])  # fmt: skip
        results = race(
            lambda i, batches=batches, round_=round_: usage_batch_commit(
                batch=f"batch_{round_}_{i}", charges=batches[i], releases=[]
            ),
            2,
        )
        failures += [r for r in results if isinstance(r, Exception)]
    assert failures == []
    for account in accounts:
        assert wallet_problems(account.pk) == []
