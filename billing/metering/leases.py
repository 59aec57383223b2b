"""Credit leases: a web process's share of a busy account's wallet, spent in memory.

An account is busy in a process when it makes at least ``BYTESPIKE_LEASE_CALLS_PER_SECOND``
calls a second there. The process then holds a lease on its wallet (a hold of kind ``lease``),
sized to cover ``LEASE_SECONDS`` of its recent spend and at least ``LEASE_CALLS`` calls like the
one asking, and admits calls against it without writing anything. Settlement batches charge the
lease (``batches.usage_batch_commit``); it grows again, under a lock, when a call does not fit.
An idle lease goes back to the wallet after ``LEASE_IDLE_SECONDS``; a dead process's lease is
released by the stale-hold sweep, as its requests' holds are.

A lease is spent in memory only while it is fresh: for three quarters of
``BYTESPIKE_HOLD_STALE_SECONDS`` after the database last marked it alive (its growth, or a
renewal that committed; renewals run every quarter). The sweep releases holds unrenewed for the
whole of that time, so a living process whose renewals lag (an overloaded machine, a slow
database) stops admitting against a lease before another process could release it, and its
calls take exact holds until a renewal lands: a released lease is never spent, and the calls
admitted last have the remaining quarter to settle against it.

An account whose wallet cannot fund a lease, and one that is not busy, is admitted by an exact
hold per call instead: no wallet goes below zero either way.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from django.conf import settings

from billing import holds

logger = logging.getLogger(__name__)

LEASE_SECONDS = 2.0
LEASE_CALLS = 16
LEASE_IDLE_SECONDS = 5.0


@dataclass
class Lease:
    account_id: int
    reference: str
    amount: int = 0  # the hold, as the database has it
    reserved: int = 0  # by calls running against it
    consumed: int = 0  # charged by answered calls, not yet committed by a batch
    wallet_available: int = 0  # the wallet's available, as of the last growth
    steps: int = 0
    fresh_until: float = 0.0  # monotonic time until which it may be spent in memory
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def free(self) -> int:
        return self.amount - self.reserved - self.consumed

    def alive_at(self, moment: float) -> None:
        """The database marked the lease alive at (or after) monotonic time ``moment``."""
        trusted = settings.BYTESPIKE_HOLD_STALE_SECONDS * 3 / 4
        self.fresh_until = max(self.fresh_until, moment + trusted)

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self.fresh_until


@dataclass
class _Rate:
    """Calls and spend of an account in this process, over the current and last second."""

    second: int = 0
    calls: int = 0
    spend: int = 0
    last_calls: int = 0
    last_spend: int = 0

    def roll(self, now: int) -> None:
        if now != self.second:
            fresh = now == self.second + 1
            self.last_calls = self.calls if fresh else 0
            self.last_spend = self.spend if fresh else 0
            self.second, self.calls, self.spend = now, 0, 0


Runner = Callable[..., Awaitable]


class LeaseBook:
    """This process's leases, one per busy account."""

    def __init__(self, owner: str, run_db: Runner):
        self.owner = owner
        self.run_db = run_db  # runs a database function off the event loop
        self.leases: dict[int, Lease] = {}
        self.rates: dict[int, _Rate] = {}
        self._serial = 0

    def _rate(self, account_id: int) -> _Rate:
        rate = self.rates.setdefault(account_id, _Rate())
        rate.roll(int(time.monotonic()))
        return rate

    def _busy(self, rate: _Rate) -> bool:
        threshold = settings.BYTESPIKE_LEASE_CALLS_PER_SECOND
        return threshold >= 0 and max(rate.calls, rate.last_calls) >= threshold

    async def take(self, account_id: int, credits: int) -> Lease | None:
        """Reserve ``credits`` from the account's lease (grown or opened if need be), or None:
        admit the call with an exact hold of its own."""
        rate = self._rate(account_id)
        rate.calls += 1
        lease = self.leases.get(account_id)
        if lease is not None and lease.free >= credits and lease.fresh:
            return self._reserve(lease, credits)
        if not self._busy(rate):
            return None
        if lease is None:
            lease = self.leases[account_id] = self._new(account_id)
        async with lease.lock:
            if lease.amount and not lease.fresh:
                return None  # its renewals lag: exact holds until one lands (see above)
            if lease.free >= credits:
                return self._reserve(lease, credits)
            want = max(credits * LEASE_CALLS, int(max(rate.spend, rate.last_spend) * LEASE_SECONDS))
            lease.steps += 1
            asked = time.monotonic()
            try:
                grant = await self.run_db(
                    holds.lease_grow, account_id=account_id, reference=lease.reference,
                    amount=want - max(lease.free, 0), step=f"grow{lease.steps}",
                )  # fmt: skip
            except holds.LeaseClosedError:
                # Released as stale while this process lived (its renewals failed): start over.
                self.leases[account_id] = self._new(account_id)
                return None
            if grant is None:  # the wallet cannot fund a lease: exact holds decide
                return None
            lease.amount = grant.amount
            lease.wallet_available = grant.wallet.available
            lease.alive_at(asked)
            if lease.free < credits:
                return None
            return self._reserve(lease, credits)

    def _new(self, account_id: int) -> Lease:
        self._serial += 1
        return Lease(account_id, f"lease_{self.owner}_{account_id}_{self._serial}")

    def _reserve(self, lease: Lease, credits: int) -> Lease:
        lease.reserved += credits
        lease.last_used = time.monotonic()
        return lease

    def settle(self, lease: Lease, reserved: int, charge: int) -> tuple[int, int]:
        """The call reserved ``reserved`` and costs ``charge``: what the lease can charge, and the
        shortfall (a call costing more than its estimate, with the lease spent)."""
        lease.reserved -= reserved
        charged = max(min(charge, lease.amount - lease.reserved - lease.consumed), 0)
        lease.consumed += charged
        self._rate(lease.account_id).spend += charged
        return charged, charge - charged

    def release(self, lease: Lease, reserved: int) -> None:
        lease.reserved -= reserved

    def committed(self, lease_reference: str, account_id: int, charged: int) -> None:
        """A batch charged ``charged`` from the lease's hold."""
        lease = self.leases.get(account_id)
        if lease is not None and lease.reference == lease_reference:
            lease.amount -= charged
            lease.consumed -= charged

    def uncommitted(self, lease_reference: str, account_id: int, charged: int) -> None:
        """A batch failed: the calls it carried are free, and their charges free the lease."""
        lease = self.leases.get(account_id)
        if lease is not None and lease.reference == lease_reference:
            lease.consumed -= charged

    def references(self) -> list[str]:
        return [lease.reference for lease in self.leases.values()]

    def renewed(self, references, *, at: float) -> None:
        """A renewal asked for at monotonic time ``at`` committed for these holds."""
        renewed = set(references)
        for lease in list(self.leases.values()):
            if lease.reference in renewed:
                lease.alive_at(at)

    async def return_idle(self, *, everything: bool = False) -> int:
        """Give idle leases (or, at shutdown, every lease with nothing running) back."""
        returned = 0
        now = time.monotonic()
        for account_id, lease in list(self.leases.items()):
            idle = now - lease.last_used >= LEASE_IDLE_SECONDS
            if not (everything or idle) or lease.reserved or lease.consumed or lease.lock.locked():
                continue
            del self.leases[account_id]
            lease.steps += 1
            await self.run_db(
                holds.lease_shrink, reference=lease.reference, amount=lease.amount,
                step=f"return{lease.steps}",
            )  # fmt: skip
            returned += 1
        return returned

    def forget(self) -> None:
        self.leases.clear()
        self.rates.clear()
