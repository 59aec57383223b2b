"""Credit leases in memory (billing/metering/leases.py): what a process may spend without
asking the database, and when it must ask."""

import asyncio
import time

from billing import holds
from billing.holds import LeaseGrant
from billing.metering.leases import LeaseBook
from billing.services import WalletState


class Database:
    """Stands in for the database functions a lease book runs: every growth is granted."""

    def __init__(self):
        self.grown = 0

    async def run(self, function, **kwargs):
        assert function is holds.lease_grow, function
        self.grown += 1
        return LeaseGrant(kwargs["amount"], WalletState(10**9, kwargs["amount"]), 0)


def busy_book(settings) -> tuple[LeaseBook, Database]:
    settings.BYTESPIKE_LEASE_CALLS_PER_SECOND = 0  # every account is busy
    settings.BYTESPIKE_HOLD_STALE_SECONDS = 20
    database = Database()
    return LeaseBook("test", database.run), database


def test_a_lease_is_spent_in_memory_while_its_renewals_land(settings):
    book, database = busy_book(settings)

    async def scenario():
        first = await book.take(1, 100)
        assert first is not None and database.grown == 1
        # The next calls fit in the lease: no database.
        for _ in range(5):
            assert await book.take(1, 100) is first
        assert database.grown == 1
        # Its renewals stop landing (the process is overloaded, the database slow): past three
        # quarters of the stale time another process may soon release it: exact holds.
        first.fresh_until = time.monotonic() - 0.001
        assert await book.take(1, 100) is None
        assert await book.take(1, 100) is None
        assert database.grown == 1
        # A renewal lands: the lease is spent in memory again.
        book.renewed([first.reference], at=time.monotonic())
        assert await book.take(1, 100) is first
        # A renewal of other holds does not refresh it.
        first.fresh_until = time.monotonic() - 0.001
        book.renewed(["lease_someone_else"], at=time.monotonic())
        assert await book.take(1, 100) is None

    asyncio.run(scenario())


def test_a_lease_is_fresh_for_three_quarters_of_the_stale_time_after_its_growth(settings):
    book, _ = busy_book(settings)

    async def scenario():
        before = time.monotonic()
        lease = await book.take(1, 100)
        # The sweep releases a hold unrenewed for 20 s: the lease is trusted for 15 s of that,
        # counted from before its growth was asked for.
        assert before + 15 <= lease.fresh_until <= time.monotonic() + 15

    asyncio.run(scenario())
