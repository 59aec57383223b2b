"""Wallet, ledger and holds: the services and their idempotency."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from billing import errors, holds, services
from billing.invariants import wallet_problems
from billing.models import Hold, KeySpend, KeyTotal, LedgerEntry, UsageRecord, UsageRollup, Wallet
from billing.usage import UsageFacts
from tests.conftest import run_enqueued
from tests.factories import AIModelFactory, RoutingGroupFactory, fund, issue_key

pytestmark = pytest.mark.django_db
M = 1_000_000


@pytest.fixture
def model(db):
    return AIModelFactory(slug="gpt-4.1")


def usage(model, **fields):
    return UsageFacts(model_id=model.pk, family="text", protocol="openai", **fields)


def books_balance(account):
    assert wallet_problems(account.pk) == []


def test_new_accounts_have_an_empty_wallet(world):
    wallet = (
        Wallet.objects.get(account=world.outsider_account)
        if Wallet.objects.filter(account=world.outsider_account).exists()
        else services.wallet_open(account=world.outsider_account)
    )
    assert (wallet.balance, wallet.held, wallet.available) == (0, 0, 0)


def test_top_up_is_idempotent_by_reference(world):
    first = services.wallet_top_up(account=world.account, amount=5 * M, reference="pay_1")
    again = services.wallet_top_up(account=world.account, amount=5 * M, reference="pay_1")
    assert first.pk == again.pk
    assert Wallet.objects.get(account=world.account).balance == 5 * M
    assert first.balance_after == 5 * M and first.kind == "topup"
    books_balance(world.account)


@pytest.mark.parametrize("amount", [0, -1, 10**20])
def test_nonsense_amounts_are_refused(world, amount):
    with pytest.raises(errors.BillingError):
        services.wallet_top_up(account=world.account, amount=amount, reference=f"x{amount}")


def test_hold_then_settle_charges_actual_and_releases_the_rest(world, model):
    fund(world.account, 10)
    state = holds.hold_place(account_id=world.account.pk, reference="req_1", amount=3 * M)
    assert (state.balance, state.held, state.available) == (10 * M, 3 * M, 7 * M)
    result = holds.hold_settle(
        reference="req_1", charge=1_250_000, usage=usage(model, input_tokens=100, output_tokens=7)
    )
    assert (result.charged, result.shortfall) == (1_250_000, 0)
    wallet = Wallet.objects.get(account=world.account)
    assert (wallet.balance, wallet.held, wallet.in_flight) == (8_750_000, 0, 0)
    record = UsageRecord.objects.get(request_id="req_1")
    assert record.credits == 1_250_000 and record.input_tokens == 100
    rollup = UsageRollup.objects.get(account=world.account)
    assert (rollup.calls, rollup.credits, rollup.output_tokens) == (1, 1_250_000, 7)
    kinds = list(LedgerEntry.objects.filter(account=world.account).values_list("kind", flat=True))
    assert sorted(kinds) == ["charge", "hold", "topup"]
    books_balance(world.account)


def test_settle_and_release_are_idempotent(world, model):
    fund(world.account, 10)
    holds.hold_place(account_id=world.account.pk, reference="req_1", amount=2 * M)
    holds.hold_place(account_id=world.account.pk, reference="req_1", amount=2 * M)
    assert Wallet.objects.get(account=world.account).held == 2 * M
    holds.hold_settle(reference="req_1", charge=M, usage=usage(model))
    again = holds.hold_settle(reference="req_1", charge=M, usage=usage(model))
    assert again.already_closed and again.charged == M
    assert holds.hold_release(reference="req_1") is False
    assert UsageRecord.objects.count() == 1
    assert Wallet.objects.get(account=world.account).balance == 9 * M
    books_balance(world.account)


def test_release_is_free_and_writes_no_usage(world):
    fund(world.account, 10)
    holds.hold_place(account_id=world.account.pk, reference="req_2", amount=4 * M)
    assert holds.hold_release(reference="req_2") is True
    wallet = Wallet.objects.get(account=world.account)
    assert (wallet.balance, wallet.held, wallet.in_flight) == (10 * M, 0, 0)
    assert not UsageRecord.objects.exists()
    books_balance(world.account)


def test_hold_larger_than_available_is_refused(world):
    fund(world.account, 1)
    with pytest.raises(errors.InsufficientBalanceError) as error:
        holds.hold_place(account_id=world.account.pk, reference="req_3", amount=2 * M)
    assert error.value.status == 402 and error.value.code == "insufficient_balance"
    assert not Hold.objects.exists()
    assert Wallet.objects.get(account=world.account).held == 0


def test_concurrency_limit_counts_synchronous_requests_only(world):
    fund(world.account, 10)
    Wallet.objects.filter(account=world.account).update(concurrency_limit=2)
    for n in range(2):
        holds.hold_place(account_id=world.account.pk, reference=f"r{n}", amount=1)
    with pytest.raises(errors.ConcurrencyLimitError) as error:
        holds.hold_place(account_id=world.account.pk, reference="r3", amount=1)
    assert error.value.status == 429 and error.value.code == "concurrency_limit"
    # A task's hold does not count against the limit.
    holds.hold_place(
        account_id=world.account.pk, reference="task_1", amount=1, counts_in_flight=False
    )
    holds.hold_release(reference="r0")
    holds.hold_place(account_id=world.account.pk, reference="r4", amount=1)
    assert Wallet.objects.get(account=world.account).in_flight == 2


def test_settle_above_what_the_wallet_covers_records_the_shortfall(world, model):
    fund(world.account, 5)
    holds.hold_place(account_id=world.account.pk, reference="a", amount=2 * M)
    holds.hold_place(account_id=world.account.pk, reference="b", amount=2 * M)
    # "a" really cost 9 credits; 5 - 2 (b's hold) = 3 can be charged without touching b.
    result = holds.hold_settle(reference="a", charge=9 * M, usage=usage(model))
    assert (result.charged, result.shortfall) == (3 * M, 6 * M)
    wallet = Wallet.objects.get(account=world.account)
    assert (wallet.balance, wallet.held, wallet.available) == (2 * M, 2 * M, 0)
    assert UsageRecord.objects.get(request_id="a").shortfall == 6 * M
    books_balance(world.account)


def test_admin_adjustments_are_audited_and_cannot_overdraw(world):
    fund(world.account, 3)
    entry = services.wallet_admin_adjust(
        account=world.account, amount=2 * M, actor=world.owner, note="goodwill"
    )
    assert entry.kind == "admin_credit" and entry.created_by == world.owner
    with pytest.raises(errors.InsufficientBalanceError):
        services.wallet_admin_adjust(
            account=world.account, amount=-6 * M, actor=world.owner, note="too much"
        )
    services.wallet_admin_adjust(account=world.account, amount=-5 * M, actor=world.owner, note="x")
    assert Wallet.objects.get(account=world.account).balance == 0
    assert world.account.audit_events.filter(action__startswith="wallet.admin").count() == 2
    with pytest.raises(errors.BillingError):
        services.wallet_admin_adjust(account=world.account, amount=M, actor=world.owner, note=" ")
    books_balance(world.account)


def test_refund_once_per_reference(world):
    services.refund(account=world.account, amount=M, reference="task_x")
    services.refund(account=world.account, amount=M, reference="task_x")
    assert Wallet.objects.get(account=world.account).balance == M
    books_balance(world.account)


def test_key_spend_buckets_and_totals_follow_charges(world, model):
    key, _ = issue_key(world.account, RoutingGroupFactory(slug="default"))
    fund(world.account, 10)
    for n in range(3):
        holds.hold_place(
            account_id=world.account.pk, reference=f"k{n}", amount=M, api_key_id=key.pk
        )
        holds.hold_settle(reference=f"k{n}", charge=100_000, usage=usage(model, api_key_id=key.pk))
    assert KeyTotal.objects.get(api_key=key).credits == 300_000
    assert sum(KeySpend.objects.filter(api_key=key).values_list("credits", flat=True)) == 300_000


def test_backdated_settle_lands_in_its_hour(world, model):
    fund(world.account, 10)
    at = timezone.now() - timedelta(days=3, minutes=17)
    holds.hold_place(account_id=world.account.pk, reference="old", amount=M)
    holds.hold_settle(reference="old", charge=M, usage=usage(model), at=at)
    rollup = UsageRollup.objects.get()
    assert rollup.hour == at.replace(minute=0, second=0, microsecond=0)
    assert UsageRecord.objects.get().created_at == at


def test_request_holds_nobody_renews_are_released_and_task_holds_are_not(world):
    fund(world.account, 10)
    holds.hold_place(account_id=world.account.pk, reference="stuck", amount=M)
    holds.hold_place(
        account_id=world.account.pk, reference="task_y", amount=M, counts_in_flight=False,
        kind="task",
    )  # fmt: skip
    Hold.objects.update(renewed_at=timezone.now() - timedelta(minutes=1))
    assert holds.holds_release_stale(older_than=timedelta(seconds=20)) == 1
    assert Hold.objects.get(reference="task_y").status == "open"
    assert Wallet.objects.get(account=world.account).in_flight == 0
    books_balance(world.account)


def test_a_renewed_hold_is_not_stale_however_old_it_is(world):
    fund(world.account, 10)
    holds.hold_place(account_id=world.account.pk, reference="long-stream", amount=M)
    holds.hold_place(account_id=world.account.pk, reference="orphan", amount=M)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Hold.objects.update(created_at=an_hour_ago, renewed_at=an_hour_ago)
    assert holds.holds_renew(references=["long-stream"]) == ["long-stream"]
    assert holds.holds_release_stale(older_than=timedelta(seconds=20)) == 1
    assert Hold.objects.get(reference="long-stream").status == "open"
    assert Hold.objects.get(reference="orphan").status == "released"


def test_a_hold_renewed_after_the_sweep_listed_it_stays_open(world):
    """The sweep reads the stale holds, then releases them one by one: a renewal in between
    (the call is alive after all) wins."""
    fund(world.account, 10)
    holds.hold_place(account_id=world.account.pk, reference="slow-renewal", amount=M)
    cutoff = timezone.now() - timedelta(seconds=20)
    Hold.objects.update(renewed_at=cutoff - timedelta(seconds=1))  # listed as stale
    assert holds.holds_renew(references=["slow-renewal"]) == ["slow-renewal"]  # then renewed
    assert not holds.hold_release(reference="slow-renewal", stale_before=cutoff)
    assert Hold.objects.get(reference="slow-renewal").status == "open"
    books_balance(world.account)


def test_beat_releases_request_holds_not_renewed_for_the_setting(world, settings):
    from billing.jobs import release_stale_holds

    settings.BYTESPIKE_HOLD_STALE_SECONDS = 30
    fund(world.account, 10)
    holds.hold_place(account_id=world.account.pk, reference="orphan", amount=M)
    holds.hold_place(account_id=world.account.pk, reference="in-flight", amount=M)
    Hold.objects.filter(reference="orphan").update(
        renewed_at=timezone.now() - timedelta(seconds=31)
    )
    assert release_stale_holds() == 1
    assert Hold.objects.get(reference="orphan").status == "released"
    assert Hold.objects.get(reference="in-flight").status == "open"


def test_settling_a_released_hold_still_charges_what_was_used(world, model):
    """Issue 11: a call whose hold was swept while it ran used to be recorded as free."""
    fund(world.account, 10)
    holds.hold_place(account_id=world.account.pk, reference="slow", amount=3 * M)
    assert holds.hold_release(reference="slow")
    settlement = holds.hold_settle(reference="slow", charge=2 * M, usage=usage(model))
    assert (settlement.charged, settlement.shortfall) == (2 * M, 0)
    wallet = Wallet.objects.get(account=world.account)
    assert (wallet.balance, wallet.held, wallet.in_flight) == (8 * M, 0, 0)
    assert UsageRecord.objects.get(request_id="slow").credits == 2 * M
    assert Hold.objects.get(reference="slow").status == "settled"
    # Once: a second settle changes nothing.
    assert holds.hold_settle(reference="slow", charge=2 * M, usage=usage(model)).already_closed
    assert Wallet.objects.get(account=world.account).balance == 8 * M
    books_balance(world.account)


def test_a_late_settle_charges_no_more_than_is_available(world, model):
    fund(world.account, 2)
    holds.hold_place(account_id=world.account.pk, reference="slow", amount=2 * M)
    holds.hold_release(reference="slow")
    holds.hold_place(account_id=world.account.pk, reference="other", amount=M)
    settlement = holds.hold_settle(reference="slow", charge=2 * M, usage=usage(model))
    assert (settlement.charged, settlement.shortfall) == (M, M)
    assert Wallet.objects.get(account=world.account).available == 0
    books_balance(world.account)


def test_low_balance_alerts_owners_once_per_crossing(
    world, model, enqueued, django_capture_on_commit_callbacks
):
    fund(world.account, 10)
    services.wallet_set_low_balance_threshold(
        account=world.account, amount=5 * M, actor=world.owner
    )

    def spend(ref, credits):
        holds.hold_place(account_id=world.account.pk, reference=ref, amount=credits * M)
        holds.hold_settle(reference=ref, charge=credits * M, usage=usage(model))

    with django_capture_on_commit_callbacks(execute=True):
        spend("s1", 4)  # 6 left: above
        spend("s2", 2)  # 4 left: crossed
        spend("s3", 1)  # still below: no second alert
    assert [job.name for job in enqueued] == ["billing.jobs.low_balance_alert"]
    assert run_enqueued(enqueued) == [1]
    (message,) = mail.outbox
    assert message.to == ["owner@acme.test"] and "low" in message.subject
    fund(world.account, 10, reference="refill")
    assert Wallet.objects.get(account=world.account).low_balance_alerted is False
    with django_capture_on_commit_callbacks(execute=True):
        spend("s4", 12)  # crossed again
    assert len(enqueued) == 1
