"""The metering engine: the one door through which spend enters the books.

A call is admitted (``Meter.admit``): its key's limits
and its account's concurrency are checked and reserved by the counters, in one atomic step (in
memory, or one Redis round trip); then its wallet's credit, against the process's lease for a
busy account (in memory), or with an exact hold of its own (one database write). After the
upstream answered, ``Call.settle`` hands the usage to the flusher, which writes the calls of many
requests in one transaction (group commit), and answers once that transaction is committed: a
web process killed after answering loses nothing it answered. A call that fails is released:
free.

If Redis cannot be reached, calls are admitted the way they were before counters: an exact hold
per call, the key's quota and credit caps checked in the hold's transaction under the wallet's
lock, the account's concurrency by the wallet's ``in_flight``; per-minute limits are not counted
until Redis is back (docs/operations.md).

Tasks go through the same counters at submit (``task_reserve``), then hold their estimate in
the database with the task (``task_hold``); workers settle or release that hold when the task
ends (``task_settle``, ``task_release``), and each web process's maintenance gives the counters'
reservation of a finished task back.
"""

import asyncio
import concurrent.futures
import contextvars
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field, replace

import redis.exceptions
from asgiref.sync import async_to_sync
from django.conf import settings
from ulid import ULID

from billing import batches, budgets, holds
from billing.batches import Release
from billing.holds import Settlement
from billing.metering.counters import (
    MemoryCounters,
    RedisCounters,
    Reservation,
    Seed,
    SeedNeeded,
    keep_alive,
)
from billing.metering.leases import Lease, LeaseBook
from billing.metering.limits import BudgetLimit, KeyLimits, LimitState
from billing.models import HoldKind
from billing.services import WalletState
from billing.signals import settlement_lagging
from billing.usage import Charge, UsageFacts
from core import logs, metrics, tracing
from core.db import run_db

logger = logging.getLogger(__name__)

OWNER = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
BATCH_MAX = 500
TASK_SUBMIT_SECONDS = 60  # longer than any submit takes
ACCOUNT_SETTINGS_SECONDS = 10.0
# A process not heard from for this long is dead: what it reserved in Redis is given back.
HEARTBEAT_SECONDS = 3.0


@dataclass
class Call:
    """An admitted call, until it is settled or released (once)."""

    meter: "Meter"
    reference: str
    account_id: int
    key_id: int | None
    credits: int  # reserved
    limits: LimitState
    wallet: WalletState
    lease: Lease | None = None
    counted: bool = True  # reserved in the counters (not when Redis was down)
    closed: bool = False
    tags: tuple[str, ...] = ()  # the caller's (billing/tags.py), written on its usage row

    @property
    def available(self) -> int:
        """The wallet's available credit, as this process knows it."""
        if self.lease is not None:
            return self.lease.wallet_available + max(self.lease.free, 0)
        return self.wallet.available

    async def settle(self, charge: int, usage: UsageFacts, *, tokens: int = 0) -> Settlement:
        """Charge what the call cost, once it is written down. ``tokens``: what it used."""
        if self.closed:
            raise RuntimeError(f"{self.reference} is already closed")
        self.closed = True
        settlement = await self.meter._settle(self, charge, usage, tokens)
        logs.note(credits_micro=settlement.charged)  # the request's access line
        return settlement

    async def release(self) -> None:
        """The call failed: it is free."""
        if self.closed:
            return
        self.closed = True
        await self.meter._release(self)
        logs.note(credits_micro=0)

    def settle_now(self, charge: int, usage: UsageFacts, *, tokens: int = 0) -> Settlement:
        """``settle`` for code running in a thread of the web process (a stream's close)."""
        return async_to_sync(self.settle)(charge, usage, tokens=tokens)

    def headers(self, charged: int | None = None) -> dict:
        """The wallet and limit headers (SPEC §4), before settling (``charged`` None: what is
        reserved counts) or after (what was charged counts)."""
        from billing.metering.headers import limit_headers

        return limit_headers(self.available, self.limits, self.credits, charged)


class Meter:
    """One per process: counters, leases, the flusher and the calls in flight."""

    def __init__(self):
        self.owner = OWNER
        self.memory = MemoryCounters()
        self._redis: dict[tuple, RedisCounters] = {}
        self.leases = LeaseBook(self.owner, run_db)
        self._accounts: dict[int, tuple[float, int]] = {}
        self._exact: set[str] = set()  # references of calls with a hold of their own
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._flushing = False
        self._maintenance: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
        self._heartbeat: threading.Thread | None = None
        self._seeding: dict[tuple, asyncio.Future] = {}
        # Keys whose calls were admitted by the database while the counters were unreachable:
        # their spend in Redis missed those calls, so it is loaded again once Redis answers.
        self._unheard: set[int] = set()
        # The same for budgets (by BudgetLimit.counter), and each account's budgets, read at
        # most once a second (billing/budgets.py).
        self._unheard_budgets: dict[str, BudgetLimit] = {}
        self._budget_rules: dict[int, tuple[float, tuple, str]] = {}
        # Whether this process's batches lag (operators are told once per crossing), and the
        # tasks telling them, kept until done.
        self._lagging = False
        self._telling: set[asyncio.Task] = set()

    # --- Counters ----------------------------------------------------------------------------

    def counters(self):
        if not settings.REDIS_URL:
            return self.memory
        loop = asyncio.get_running_loop()
        prefix = self._prefix()
        store = self._redis.get((loop, prefix))
        if store is None:
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(
                settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
            )
            store = self._redis[(loop, prefix)] = RedisCounters(client, prefix, self.owner)
        return store

    @staticmethod
    def _prefix() -> str:
        return settings.CACHES["default"].get("KEY_PREFIX") or settings.BYTESPIKE_CACHE_PREFIX

    async def _reserve(self, reservation: Reservation, account_limit: int) -> LimitState:
        store = self.counters()
        limits = reservation.limits
        if limits is not None and limits.key_id in self._unheard:
            await store.forget_key(limits)
            self._unheard.discard(limits.key_id)
        for budget in reservation.budgets:
            if budget.counter in self._unheard_budgets:
                await store.forget_budget(budget)
                self._unheard_budgets.pop(budget.counter, None)
        try:
            return await store.admit(reservation, account_limit, time.time())
        except SeedNeeded as needed:
            if needed.key:
                await self._seed(store, reservation.limits)
            for budget in needed.budgets:
                await self._seed_budget(store, budget)
            return await store.admit(reservation, account_limit, time.time())

    async def _once(self, name: tuple, load) -> None:
        """Run ``load()`` once however many calls ask for ``name`` at the same time."""
        loading = self._seeding.get(name)
        if loading is None:
            loading = self._seeding[name] = asyncio.ensure_future(load())
            loading.add_done_callback(lambda _: self._seeding.pop(name, None))
        await asyncio.shield(loading)

    async def _seed(self, store, limits: KeyLimits) -> None:
        """Load a key's spend into the counters."""

        async def load():
            seed = await run_db(_load_seed, limits.key_id)
            await store.seed(limits, seed, time.time())

        await self._once((id(store), limits.key_id, limits.version), load)

    async def _seed_budget(self, store, budget: BudgetLimit) -> None:
        """Load a budget's spend in its period into the counters."""

        async def load():
            total = await run_db(budgets.spent, budget.scope, budget.period, zone=budget.zone)
            await store.seed_budget(budget, total)

        await self._once((id(store), budget.counter), load)

    async def _budgets(self, principal) -> tuple[BudgetLimit, ...]:
        """The hard budgets a call with ``principal``'s key counts against."""
        cached = self._budget_rules.get(principal.account_id)
        if cached is None or cached[0] < time.monotonic():
            rules, zone = await run_db(budgets.rules_for_account, principal.account_id)
            cached = self._budget_rules[principal.account_id] = (
                time.monotonic() + budgets.RULES_SECONDS, rules, zone,
            )  # fmt: skip
        _, rules, zone = cached
        if not rules:
            return ()
        return budgets.limits_for(
            rules, zone, member_id=getattr(principal, "member_id", None),
            project_id=getattr(principal, "project_id", None), now=_now(),
        )  # fmt: skip

    def budgets_changed(self, account_id: int) -> None:
        """This process changed the account's budgets: read them again at its next call."""
        self._budget_rules.pop(account_id, None)

    async def _account_limit(self, account_id: int) -> int:
        cached = self._accounts.get(account_id)
        if cached is None or cached[0] < time.monotonic():
            limit = await run_db(_concurrency_limit, account_id)
            cached = self._accounts[account_id] = (
                time.monotonic() + ACCOUNT_SETTINGS_SECONDS,
                limit,
            )
        return cached[1]

    # --- Admission -----------------------------------------------------------------------------

    async def admit(
        self, principal, *, reference: str, credits: int, tokens: int = 0, tags: tuple = ()
    ) -> Call:
        """Admit a call that may cost up to ``credits`` and use ``tokens``; raises a
        ``BillingError`` (402, 429) when the wallet or a limit refuses it. ``tags``: the
        caller's, written on the call's usage row when it settles."""
        with tracing.span("admission", **{"bytespike.credits_reserved": credits}):
            call = await self._admit(principal, reference, credits, tokens)
        call.tags = tags
        return call

    async def _admit(self, principal, reference: str, credits: int, tokens: int) -> Call:
        self._start_maintenance()
        limits = KeyLimits.of(principal)
        hard_budgets = await self._budgets(principal)
        reservation = Reservation(
            id=reference, account_id=principal.account_id,
            limits=limits if limits.any else None, credits=credits, tokens=tokens,
            second=int(time.time()), budgets=hard_budgets,
        )  # fmt: skip
        account_limit = await self._account_limit(principal.account_id)
        try:
            state = await self._reserve(reservation, account_limit)
        except UNREACHABLE:
            logger.warning("counters unavailable: admitting %s by the database", reference)
            # A timeout may come after the script ran: give back what it may have reserved.
            await self._quietly(self.counters().release(reference))
            return await self._admit_by_database(principal, reference, credits, hard_budgets)
        call = Call(self, reference, principal.account_id, principal.key_id, credits, state,
                    WalletState(0, 0))  # fmt: skip
        try:
            call.lease = await self.leases.take(principal.account_id, credits)
            if call.lease is None:
                call.wallet = await run_db(
                    holds.hold_place, account_id=principal.account_id, reference=reference,
                    amount=credits, api_key_id=principal.key_id, counts_in_flight=False,
                )  # fmt: skip
                self._track(reference)
        except BaseException:
            await self._unreserve(call)
            raise
        return call

    async def _admit_by_database(self, principal, reference: str, credits: int,
                                 hard_budgets=()) -> Call:  # fmt: skip
        if principal.key_id is not None:
            self._unheard.add(principal.key_id)
        for budget in hard_budgets:
            self._unheard_budgets[budget.counter] = budget
        wallet = await run_db(
            holds.hold_place, account_id=principal.account_id, reference=reference,
            amount=credits, api_key_id=principal.key_id, counts_in_flight=True,
            key_limits=principal, budgets=hard_budgets,
        )  # fmt: skip
        self._track(reference)
        return Call(self, reference, principal.account_id, principal.key_id, credits,
                    LimitState(), wallet, counted=False)  # fmt: skip

    # --- Settlement ----------------------------------------------------------------------------

    async def _settle(self, call: Call, charge: int, usage: UsageFacts, tokens: int) -> Settlement:
        at = _now()
        if call.tags and not usage.tags:
            usage = replace(usage, tags=call.tags)
        shortfall = 0
        if call.lease is not None:
            charged, shortfall = self.leases.settle(call.lease, call.credits, charge)
            item = Charge(call.reference, call.account_id, charged, usage, at, call.lease.reference)
        else:
            item = Charge(call.reference, call.account_id, charge, usage, at)
        self._untrack(call.reference)
        # Shielded: a request cancelled while its batch commits is charged all the same, and
        # the books of the call are closed by the batch's leader (``_written``).
        with tracing.span("settlement", **{"bytespike.credits": item.charge}):
            settlement = await asyncio.shield(self._flush(_Pending(item, call, tokens)))
        if shortfall:
            settlement = Settlement(settlement.charged, settlement.shortfall + shortfall,
                                    settlement.wallet)  # fmt: skip
        return settlement

    async def _written(self, pending: "_Pending", settlement: Settlement | None) -> None:
        """After a batch: the call's lease and counters learn what it was charged (or, if the
        batch failed, that it is free)."""
        call, item = pending.call, pending.item
        if call is None:
            return
        if call.lease is not None:
            if settlement is None:
                self.leases.uncommitted(call.lease.reference, call.account_id, item.charge)
            else:
                self.leases.committed(call.lease.reference, call.account_id, item.charge)
                call.lease.wallet_available = settlement.wallet.available
        elif settlement is not None:
            call.wallet = settlement.wallet
        if not call.counted:
            return
        if settlement is None:
            await self._unreserve(call)
        else:
            await self._quietly(
                self.counters().settle(call.reference, settlement.charged, pending.tokens,
                                       time.time())
            )  # fmt: skip

    async def _release(self, call: Call) -> None:
        if call.lease is not None:
            self.leases.release(call.lease, call.credits)
        else:
            self._untrack(call.reference)
            await self._flush(_Pending(Release(call.reference, call.account_id)))
        await self._unreserve(call)

    async def _unreserve(self, call: Call) -> None:
        if call.counted:
            await self._quietly(self.counters().release(call.reference))

    async def _quietly(self, awaitable) -> None:
        """Counter updates after the books are written: a Redis hiccup only delays them (its
        reservation is given back when this process is seen dead, or expires)."""
        try:
            await awaitable
        except UNREACHABLE:
            logger.warning("counters unavailable: an update was skipped", exc_info=True)

    async def _flush(self, pending: "_Pending", *, wait: bool = True):
        """Queue a call for the next batch; what it was charged once the batch is committed.
        The first caller to find no batch running leads: it commits what is queued, again and
        again, until the queue is empty (group commit)."""
        with self._lock:
            self._pending.append(pending)
            lead = not self._flushing
            self._flushing = self._flushing or lead
        if lead:
            # A task of its own, so that a cancelled request does not stop the batch it leads.
            asyncio.get_running_loop().create_task(self._lead(), context=contextvars.Context())
        if not wait:
            return None
        return await asyncio.wrap_future(pending.future)

    async def _lead(self) -> None:
        try:
            while True:
                with self._lock:
                    batch, self._pending = self._pending[:BATCH_MAX], self._pending[BATCH_MAX:]
                    if not batch:
                        self._flushing = False
                        return
                try:
                    results = await run_db(_commit, [pending.item for pending in batch])
                except Exception as error:  # the database is down: these calls are free
                    logger.warning("a settlement batch of %d failed", len(batch), exc_info=True)
                    metrics.SETTLEMENT_BATCH_FAILED.observe(len(batch))
                    for pending in batch:
                        await self._written(pending, None)
                        pending.fail(error)
                    continue
                _committed(batch)
                self._watch_lag(batch)
                for pending in batch:
                    settlement = results.get(pending.item.reference)
                    await self._written(pending, settlement)
                    pending.done(settlement)
        except BaseException:
            with self._lock:
                self._flushing = False
            raise

    def _watch_lag(self, batch: list["_Pending"]) -> None:
        """Tell operators when answered calls start waiting too long for their batch, and when
        they stop (at half the threshold, so a lag hovering around it is one alert)."""
        lag = time.monotonic() - min(pending.queued for pending in batch)
        threshold = settings.BYTESPIKE_OPERATOR_SETTLEMENT_LAG_SECONDS
        stays = lag >= threshold / 2 if self._lagging else lag < threshold
        if stays:
            return
        self._lagging = not self._lagging
        telling = asyncio.get_running_loop().create_task(
            run_db(settlement_lagging.send, sender=Meter, owner=self.owner,
                   lagging=self._lagging, seconds=lag)
        )  # fmt: skip
        self._telling.add(telling)
        telling.add_done_callback(self._told)

    def _told(self, telling: asyncio.Task) -> None:
        self._telling.discard(telling)
        if not telling.cancelled() and telling.exception() is not None:
            logger.warning("settlement lag not told", exc_info=telling.exception())

    # --- Tasks ---------------------------------------------------------------------------------

    async def task_reserve(self, principal, *, reference: str, credits: int) -> LimitState:
        """Count a task's estimate against its key's limits (no slot in flight); its wallet
        is held with the task, in the transaction that saves it."""
        with tracing.span("admission", **{"bytespike.credits_reserved": credits}):
            return await self._task_reserve(principal, reference, credits)

    async def _task_reserve(self, principal, reference: str, credits: int) -> LimitState:
        limits = KeyLimits.of(principal)
        hard_budgets = await self._budgets(principal)
        if not limits.any and not hard_budgets:
            return LimitState()
        reservation = Reservation(
            id=reference, account_id=principal.account_id, limits=limits if limits.any else None,
            credits=credits, second=int(time.time()), in_flight=False, budgets=hard_budgets,
        )  # fmt: skip
        self._start_maintenance()
        try:
            return await self._reserve(reservation, 0)
        except UNREACHABLE:
            # The hold's transaction checks the quota and caps instead; the budgets here.
            for budget in hard_budgets:
                self._unheard_budgets[budget.counter] = budget
            if hard_budgets:
                await run_db(holds.budgets_checked, principal.account_id, hard_budgets, credits)
            return LimitState()

    async def task_unreserve(self, reference: str) -> None:
        await self._quietly(self.counters().release(reference, owner="tasks"))

    async def _finish_tasks(self) -> int:
        """Give back the counters' reservations of tasks that have ended (charged what they
        cost); whichever web process sees it first does it, once."""
        store = self.counters()
        open_ids = await store.open_reservations("tasks")
        if not open_ids:
            return 0
        ended = await run_db(_ended_tasks, open_ids, int(time.time()) - TASK_SUBMIT_SECONDS)
        for task_id, credits in ended.items():
            await store.settle(task_id, credits, 0, time.time(), owner="tasks")
        return len(ended)

    # --- Holds this process keeps alive, and maintenance ------------------------------------

    def _track(self, reference: str) -> None:
        with self._lock:
            self._exact.add(reference)

    def _untrack(self, reference: str) -> None:
        with self._lock:
            self._exact.discard(reference)

    def live_references(self) -> list[str]:
        """The holds this process renews: its calls' own holds and its leases."""
        with self._lock:
            return [*self._exact, *self.leases.references()]

    def start(self) -> None:
        """The web process is up (ASGI lifespan startup): say it is alive and look out for dead
        processes' reservations and ended tasks from now on, not from its first call."""
        self._start_maintenance()

    def _start_maintenance(self) -> None:
        if not maintenance_enabled:
            return
        if settings.REDIS_URL and self._heartbeat is None:
            self._heartbeat = keep_alive(
                settings.REDIS_URL, self._prefix(), self.owner, HEARTBEAT_SECONDS
            )
        loop = asyncio.get_running_loop()
        if loop not in self._maintenance:
            self._maintenance[loop] = loop.create_task(
                self._maintain(), context=contextvars.Context()
            )

    async def _maintain(self) -> None:
        """Every second: say this process is alive, give back what dead processes and ended
        tasks reserved, and return idle leases."""
        while True:
            try:
                store = self.counters()
                await store.reclaim_dead()
                await self._finish_tasks()
                await self.leases.return_idle()
            except Exception:
                logger.warning("metering maintenance failed; trying again", exc_info=True)
            await asyncio.sleep(1.0)

    async def drained(self, timeout: float = 5.0) -> bool:
        """Wait until no settlement batch is queued or being written (an event loop about to
        end must not cut one short: its calls' leases would not learn of their commit)."""
        deadline = time.monotonic() + timeout
        while self._flushing and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self._flushing

    async def shutdown(self) -> int:
        """The process is stopping: let the last batch commit, then give back every lease
        that has no call running (one that has is released by the stale sweep). How many."""
        await self.drained()
        return await self.leases.return_idle(everything=True)

    def forget(self) -> None:
        """Drop what this process remembers (tests: ids repeat after a rollback)."""
        self.memory = MemoryCounters()
        self._redis.clear()
        self.leases.forget()
        self._accounts.clear()
        self._unheard.clear()
        self._unheard_budgets.clear()
        self._budget_rules.clear()
        self._lagging = False
        with self._lock:
            self._exact.clear()
            self._pending.clear()
            self._flushing = False


@dataclass
class _Pending:
    """A call waiting for its batch: what to write, and who waits for it."""

    item: Charge | Release
    call: Call | None = None
    tokens: int = 0
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    queued: float = field(default_factory=time.monotonic)

    def done(self, settlement: Settlement | None) -> None:
        if not self.future.done():  # a waiter that was cancelled left it so
            self.future.set_result(settlement)

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)


def _committed(batch: list[_Pending]) -> None:
    """A batch's size, and how long each of its calls waited for it (metrics)."""
    now = time.monotonic()
    metrics.SETTLEMENT_BATCH_COMMITTED.observe(len(batch))
    for pending in batch:
        metrics.SETTLEMENT_LAG.observe(now - pending.queued)


# In-process tests turn this off (tests/conftest.py): a maintenance task would outlive the
# event loop of the request that started it.
maintenance_enabled = True


# What a store that cannot be reached raises (Redis down, a connection reset).
UNREACHABLE = (OSError, ConnectionError, TimeoutError, redis.exceptions.ConnectionError,
               redis.exceptions.TimeoutError)  # fmt: skip


def _now():
    from django.utils import timezone

    return timezone.now()


def _commit(items: list) -> dict:
    batch = f"batch_{ULID()}"
    charges = [i for i in items if isinstance(i, Charge)]
    releases = [i for i in items if isinstance(i, Release)]
    return batches.usage_batch_commit(batch=batch, charges=charges, releases=releases)


def _load_seed(key_id: int) -> Seed:
    from datetime import timedelta

    from django.db.models import Sum

    from billing.models import Hold, HoldStatus, KeySpend, KeyTotal

    since = _now() - timedelta(days=7, minutes=10)
    total = KeyTotal.objects.filter(api_key_id=key_id).values_list("credits", flat=True).first()
    held = Hold.objects.filter(
        api_key_id=key_id, status=HoldStatus.OPEN, kind=HoldKind.TASK
    ).aggregate(total=Sum("amount"))["total"]
    buckets = {
        int(bucket.timestamp()): credits
        for bucket, credits in KeySpend.objects.filter(
            api_key_id=key_id, bucket__gte=since
        ).values_list("bucket", "credits")
    }
    # Tasks still running count as spent until the counters hear of them again.
    return Seed((total or 0) + (held or 0), buckets)


def _concurrency_limit(account_id: int) -> int:
    from billing.models import Wallet

    wallet, _ = Wallet.objects.get_or_create(account_id=account_id)
    return wallet.concurrency_limit


def _ended_tasks(reserved: dict[str, int], submitted_before: int) -> dict[str, int]:
    """Of the tasks reserved (id -> when), those that ended, with what they cost: read from the
    task's hold (its reference is the task's id, placed in the transaction that saves the task),
    which is settled or released, with what it charged, when the task ends."""
    from billing.models import Hold, HoldStatus

    found = Hold.objects.filter(reference__in=list(reserved)).values_list(
        "reference", "status", "charged"
    )
    known = {reference: (status, charged) for reference, status, charged in found}
    # A reservation whose task never appeared (its submit failed, its process died) ends too,
    # free; one still being submitted is left alone.
    return {
        task_id: (known[task_id][1] if task_id in known else 0)
        for task_id, second in reserved.items()
        if (known[task_id][0] != HoldStatus.OPEN if task_id in known else second < submitted_before)
    }


meter = Meter()
