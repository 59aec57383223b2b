"""Webhook deliveries racing on PostgreSQL with real threads: however many deliveries of one
payment arrive at once, the wallet is credited once, with one ledger entry and one receipt."""

import pytest
from django.db import transaction

from billing import topups
from billing.invariants import wallet_problems
from billing.models import LedgerEntry, Payment, Wallet
from billing.payments import sandbox
from billing.services import wallet_open
from tests.races import race

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
M = 1_000_000
SECRET = "sandbox-secret-for-races"


@pytest.fixture(autouse=True)
def _sandbox(settings):
    settings.BYTESPIKE_PAYMENT_PROVIDER = "sandbox"
    settings.BYTESPIKE_SANDBOX_PAYMENT_SECRET = SECRET


def signed(payment: Payment, *, paid: bool = True):
    return sandbox.SandboxProvider(secret=SECRET).event_build(
        provider_payment_id=payment.provider_payment_id,
        payment_id=payment.public_id,
        account_id=payment.account.public_id,
        amount=payment.amount,
        paid=paid,
    )


def test_twenty_concurrent_deliveries_of_one_payment_credit_it_once(world, monkeypatch):
    wallet_open(account=world.account)
    payment, _ = topups.payment_start(
        account=world.account, actor=world.owner, amount=50 * M, site="http://testserver"
    )
    receipts = []
    monkeypatch.setattr(
        "billing.jobs.payment_receipt.delay_on_commit",
        lambda payment_id: transaction.on_commit(lambda: receipts.append(payment_id)),
    )
    deliveries = [signed(payment) for _ in range(20)]  # a new event id each, as retries have

    outcomes = race(
        lambda i: topups.payment_webhook_receive(
            provider_name="sandbox", payload=deliveries[i][0], headers=deliveries[i][1]
        ),
        20,
    )

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sum(o.credited for o in outcomes) == 1
    assert {o.payment.status for o in outcomes} == {"paid"}
    assert LedgerEntry.objects.filter(account=world.account, kind="topup").count() == 1
    assert Wallet.objects.get(account=world.account).balance == 50 * M
    assert receipts == [payment.pk]
    assert wallet_problems(world.account.pk) == []


def test_paid_and_failed_events_racing_leave_the_payment_paid_and_credited_once(world):
    wallet_open(account=world.account)
    payment, _ = topups.payment_start(
        account=world.account, actor=world.owner, amount=10 * M, site="http://testserver"
    )
    deliveries = [signed(payment, paid=i % 2 == 0) for i in range(12)]

    outcomes = race(
        lambda i: topups.payment_webhook_receive(
            provider_name="sandbox", payload=deliveries[i][0], headers=deliveries[i][1]
        ),
        12,
    )

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sum(o.credited for o in outcomes) == 1
    assert Payment.objects.get().status == "paid"
    assert Wallet.objects.get(account=world.account).balance == 10 * M
    assert wallet_problems(world.account.pk) == []
