"""A key's limits under racing admissions (issue 11 found the check and the hold in two
transactions, so a burst of calls all saw room that only some of them fitted in).

Through the metering engine: 30 calls admitted at once in one event loop (the embedded
default's counters in memory, or Redis). Through the database, as when Redis is down: 30
threads, each with its own connection and transaction, on SQLite and on PostgreSQL.
"""

import asyncio

import pytest
from asgiref.sync import async_to_sync

from billing import holds
from billing.errors import BillingError
from billing.invariants import wallet_problems
from billing.metering import Call, meter
from billing.models import Hold
from billing.services import WalletState
from keys.auth import KeyPrincipal
from keys.models import ApiKey
from tests.factories import RoutingGroupFactory, fund, issue_key
from tests.races import race

M = 1_000_000
CALLS = 30
LIMITS = [("quota", 402), ("rate_limit_5h", 429), ("rate_limit_7d", 429)]


def principal(world, **limits) -> KeyPrincipal:
    key, _ = issue_key(world.account, RoutingGroupFactory(), actor=world.owner)
    ApiKey.objects.filter(pk=key.pk).update(**limits)
    key.refresh_from_db()
    return KeyPrincipal.from_key(key)


@pytest.mark.django_db
@pytest.mark.parametrize(("limit", "status"), [*LIMITS, ("max_concurrent", 429)])
def test_calls_admitted_at_once_stop_exactly_at_a_keys_limit(world, limit, status):
    fund(world.account, 100)
    key = principal(world, **{limit: 3 if limit == "max_concurrent" else 3 * M})

    async def burst():
        async def one(n):
            try:
                return await meter.admit(key, reference=f"req_burst_{n}", credits=M)
            except BillingError as error:
                return error

        return await asyncio.gather(*(one(n) for n in range(CALLS)))

    results = async_to_sync(burst)()
    admitted = [r for r in results if isinstance(r, Call)]
    refused = [r for r in results if isinstance(r, BillingError)]
    # Spend counts what is held: 0, 1 and 2 credits are below the limit of 3; then it is reached.
    assert (len(admitted), len(refused)) == (3, CALLS - 3)
    assert {r.status for r in refused} == {status}
    assert wallet_problems(world.account.pk) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("limit", "status"), LIMITS)
def test_database_admissions_racing_stop_exactly_at_a_keys_limit(world, limit, status):
    fund(world.account, 100)
    key = principal(world, **{limit: 3 * M})

    def admit(i):
        return holds.hold_place(
            account_id=world.account.pk, reference=f"req_race_{i}", amount=M,
            api_key_id=key.key_id, key_limits=key,
        )  # fmt: skip

    results = race(admit, CALLS)
    admitted = [r for r in results if isinstance(r, WalletState)]
    refused = [r for r in results if isinstance(r, BillingError)]
    assert (len(admitted), len(refused)) == (3, CALLS - 3), results
    assert {r.status for r in refused} == {status}
    assert Hold.objects.filter(api_key_id=key.key_id, status="open").count() == 3
    assert wallet_problems(world.account.pk) == []
