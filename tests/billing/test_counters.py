"""The admission counters: the same contract in process memory and in Redis (one Lua script).

Time is injected: each call says what "now" is.
"""

import asyncio
import os
import uuid

import pytest

from billing.errors import (
    BudgetExceededError,
    ConcurrencyLimitError,
    QuotaExceededError,
    RateLimitExceededError,
)
from billing.metering.counters import (
    MemoryCounters,
    RedisCounters,
    Reservation,
    Seed,
    SeedNeeded,
    alive_key,
    keep_alive,
)
from billing.metering.limits import BudgetLimit, KeyLimits
from tests.processes import wait_until

T0 = 1_800_000_000  # a multiple of 300: a five-minute bucket starts here
M = 1_000_000


# One event loop for a test: a Redis client belongs to the loop it connected in.
_loop = asyncio.Runner()


def run(coroutine_function, *args, **kwargs):
    return _loop.run(coroutine_function(*args, **kwargs))


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        yield MemoryCounters()
        return
    yield request.getfixturevalue("redis_store")


@pytest.fixture
def redis_store():
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs REDIS_URL")
    import redis.asyncio

    prefix = f"test-counters-{uuid.uuid4().hex}"
    client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    yield RedisCounters(client, prefix, owner="web-1")
    run(_drop, client, prefix)


async def _drop(client, prefix):
    async for name in client.scan_iter(match=f"{prefix}:*"):
        await client.delete(name)
    await client.aclose()


def call(store, limits, n, *, credits=0, tokens=0, at=T0, account=1, account_limit=100,
         in_flight=True):  # fmt: skip
    reservation = Reservation(
        id=f"req_{n}", account_id=account, limits=limits, credits=credits, tokens=tokens,
        second=int(at), in_flight=in_flight,
    )  # fmt: skip
    return run(store.admit, reservation, account_limit, at)


def seeded(store, limits, total=0, buckets=None, at=T0):
    run(store.seed, limits, Seed(total, buckets or {}), at)
    return limits


def test_a_key_without_limits_only_counts_the_accounts_calls_in_flight(store):
    for n in range(3):
        call(store, None, n, account_limit=3)
    with pytest.raises(ConcurrencyLimitError) as refused:
        call(store, None, 9, account_limit=3)
    assert refused.value.headroom.limit == 3
    run(store.release, "req_0")
    call(store, None, 10, account_limit=3)


def test_a_task_takes_no_slot_in_flight(store):
    call(store, None, 1, account_limit=1)
    call(store, None, 2, account_limit=1, in_flight=False)


def test_spend_is_seeded_once_before_a_quota_is_checked(store):
    limits = KeyLimits(key_id=7, quota=10 * M)
    with pytest.raises(SeedNeeded):
        call(store, limits, 1, credits=M)
    seeded(store, limits, total=8 * M)
    seeded(store, limits, total=0)  # a second seed (another process) changes nothing
    state = call(store, limits, 1, credits=M)
    assert state.quota_remaining == M  # 2 left, 1 reserved by this call
    call(store, limits, 2, credits=M)  # 9 used: below 10
    with pytest.raises(QuotaExceededError):
        call(store, limits, 3, credits=M)  # 10 used (8 charged + 2 reserved)


def test_settling_charges_the_actual_cost_and_frees_the_rest(store):
    limits = seeded(store, KeyLimits(key_id=7, quota=3 * M))
    call(store, limits, 1, credits=2 * M)
    run(store.settle, "req_1", M // 2, 0, T0)
    run(store.settle, "req_1", M // 2, 0, T0)  # twice: once
    call(store, limits, 2, credits=2 * M)  # 0.5 used, 2 reserved
    with pytest.raises(QuotaExceededError):
        call(store, limits, 3, credits=M)  # its worst case does not fit in the 0.5 left
    call(store, limits, 4, credits=M // 2)  # fits exactly: 3 of 3
    with pytest.raises(QuotaExceededError):
        call(store, limits, 5, credits=1)


def test_a_cap_counts_spend_in_its_window_and_says_when_it_frees_up(store):
    limits = KeyLimits(key_id=8, rate_limit_5h=3 * M)
    # 2 credits spent 4 hours ago, 1 credit 6 hours ago (outside the 5h window).
    seeded(store, limits, total=3 * M, buckets={T0 - 4 * 3600: 2 * M, T0 - 6 * 3600: M})
    call(store, limits, 1, credits=M)  # 2 used: admitted, reaching 3
    with pytest.raises(RateLimitExceededError) as refused:
        call(store, limits, 2, credits=M // 2)  # 3 used
    assert refused.value.headroom.name == "5h"
    assert refused.value.reset == T0 - 4 * 3600 + 5 * 3600 + 1
    run(store.release, "req_1")
    # An hour and a second later the 2 credits have left the window.
    later = refused.value.reset
    call(store, limits, 3, credits=2 * M, at=later)
    call(store, limits, 4, credits=M, at=later)  # 2 used: admitted, reaching 3
    with pytest.raises(RateLimitExceededError):
        call(store, limits, 5, credits=M, at=later)


def test_settled_spend_counts_in_every_window(store):
    limits = seeded(store, KeyLimits(key_id=9, rate_limit_1d=2 * M, rate_limit_7d=5 * M))
    call(store, limits, 1, credits=M)
    run(store.settle, "req_1", 2 * M, 0, T0 + 10)
    with pytest.raises(RateLimitExceededError) as refused:
        call(store, limits, 2, credits=M, at=T0 + 20)
    assert refused.value.headroom.name == "1d"
    next_day = T0 + 86400 + 301
    state = call(store, limits, 3, credits=M, at=next_day)  # 1d is free, 7d has 2 of 5
    assert state.tightest.name == "7d" and state.tightest.remaining == 2 * M  # after this call


def test_requests_per_minute_is_a_sliding_minute(store):
    limits = KeyLimits(key_id=10, rpm=3)
    for n in range(3):
        call(store, limits, n, at=T0 + n * 10)
        run(store.settle, f"req_{n}", 0, 0, T0 + n * 10)
    with pytest.raises(RateLimitExceededError) as refused:
        call(store, limits, 3, at=T0 + 30)
    assert refused.value.headroom.name == "rpm"
    assert refused.value.reset == T0 + 61
    call(store, limits, 4, at=T0 + 61)  # the first call left the minute


def test_tokens_per_minute_reserves_the_estimate_and_keeps_what_was_used(store):
    limits = KeyLimits(key_id=11, tpm=1000)
    call(store, limits, 1, tokens=900)
    run(store.settle, "req_1", 0, 100, T0 + 1)  # used 100 of the 900 reserved
    call(store, limits, 2, tokens=900, at=T0 + 2)  # 100 used: admitted
    with pytest.raises(RateLimitExceededError) as refused:
        call(store, limits, 3, tokens=10, at=T0 + 3)  # 1000 in the minute
    assert refused.value.headroom.name == "tpm"
    run(store.release, "req_2")  # a failed call uses no tokens
    call(store, limits, 4, tokens=10, at=T0 + 4)


def test_calls_in_flight_per_key(store):
    limits = KeyLimits(key_id=12, max_concurrent=2)
    call(store, limits, 1)
    call(store, limits, 2)
    with pytest.raises(ConcurrencyLimitError):
        call(store, limits, 3)
    run(store.settle, "req_1", 0, 0, T0)
    call(store, limits, 4)


def test_a_reservation_admitted_twice_counts_once(store):
    limits = KeyLimits(key_id=13, max_concurrent=1)
    call(store, limits, 1)
    call(store, limits, 1)  # the same id again
    run(store.release, "req_1")
    call(store, limits, 2)


def test_new_limits_start_afresh(store):
    call(store, KeyLimits(key_id=14, max_concurrent=1), 1)
    call(store, KeyLimits(key_id=14, max_concurrent=2), 2)  # edited: counted anew


def test_the_tightest_limit_is_reported(store):
    limits = seeded(store, KeyLimits(key_id=15, rate_limit_5h=10 * M, rpm=2))
    state = call(store, limits, 1, credits=M)
    # After this call: one request of two left (half), nine credits of ten (nine tenths).
    assert state.tightest.name == "rpm" and state.tightest.remaining == 1


def test_a_dead_processs_reservations_are_given_back(redis_store):
    """(In memory, one process: its reservations die with it.)"""
    store = redis_store
    limits = KeyLimits(key_id=16, max_concurrent=1)
    call(store, limits, 1, account_limit=1)
    run(store.redis.set, alive_key(store.prefix, "web-1"), 1, px=60_000)  # its heartbeat
    assert run(store.reclaim_dead) == 0  # alive
    run(store.redis.delete, alive_key(store.prefix, "web-1"))  # its heartbeat ran out
    assert run(store.reclaim_dead) == 1
    call(store, limits, 2, account_limit=1)


def test_a_live_process_is_heard_while_its_event_loop_is_busy(redis_store):
    """The heartbeat runs in a thread of its own: a loop stalled by load (nothing here runs
    the event loop at all) does not make the process look dead."""
    import redis

    store = redis_store
    call(store, KeyLimits(key_id=17, max_concurrent=1), 1, account_limit=1)
    keep_alive(os.environ["REDIS_URL"], store.prefix, "web-1", ttl=0.4)
    alive = alive_key(store.prefix, "web-1")
    # Watched without the event loop (a client of its own): the loop stays stalled throughout.
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as watcher:
        for _ in range(3):  # the key goes, as when its ttl runs out: the thread sets it again
            watcher.delete(alive)
            assert wait_until(lambda: watcher.exists(alive), 5, interval=0.02)
    assert run(store.reclaim_dead) == 0


# --- Budgets (issue 16): one more credit limit, over every key of its scope ------------------


def budget_call(store, n, budgets, *, credits, limits=None, at=T0):
    reservation = Reservation(
        id=f"req_{n}", account_id=1, limits=limits, credits=credits, second=int(at),
        budgets=tuple(budgets),
    )  # fmt: skip
    return run(store.admit, reservation, 100, at)


def test_a_budget_is_seeded_then_counts_every_call_of_its_scope(store):
    monthly = BudgetLimit("account:1", "2027-01", 3 * M, "the account's monthly budget", T0 + 99)
    with pytest.raises(SeedNeeded) as needed:
        budget_call(store, 1, [monthly], credits=M)
    assert not needed.value.key and needed.value.budgets == (monthly,)
    run(store.seed_budget, monthly, M)
    run(store.seed_budget, monthly, 0)  # a second seed (another process) changes nothing
    state = budget_call(store, 1, [monthly], credits=M)  # 1 charged, 1 reserved: 1 left
    assert state.tightest.name == "budget" and state.tightest.remaining == M
    with pytest.raises(BudgetExceededError) as refused:
        budget_call(store, 2, [monthly], credits=2 * M)  # its worst case does not fit
    assert refused.value.status == 402 and refused.value.code == "budget_exceeded"
    assert "the account's monthly budget of 3.00 credits" in refused.value.message
    run(store.settle, "req_1", M // 2, 0, T0)  # charged 0.5: 1.5 used
    run(store.settle, "req_1", M // 2, 0, T0)  # twice: once
    budget_call(store, 3, [monthly], credits=3 * M // 2)  # fits exactly
    with pytest.raises(BudgetExceededError):
        budget_call(store, 4, [monthly], credits=1)
    run(store.release, "req_3")  # failed: free
    budget_call(store, 5, [monthly], credits=M)


def test_the_tightest_of_a_keys_quota_and_its_budgets_refuses(store):
    limits = seeded(store, KeyLimits(key_id=9, quota=10 * M))
    month = BudgetLimit("account:1", "2027-01", 5 * M, "the account's monthly budget", T0 + 99)
    member = BudgetLimit("member:1:4", "life", 2 * M, "the budget of a@b.test's keys")
    for budget in (month, member):
        run(store.seed_budget, budget, 0)
    budget_call(store, 1, [month, member], credits=M, limits=limits)
    with pytest.raises(BudgetExceededError) as refused:
        budget_call(store, 2, [month, member], credits=3 * M // 2, limits=limits)
    assert "a@b.test" in refused.value.message  # the member's lifetime budget, not the month's
    # Nothing was reserved by the refused call: the key's quota and the month still have room.
    budget_call(store, 3, [month], credits=4 * M, limits=limits)
    with pytest.raises(BudgetExceededError):
        budget_call(store, 4, [month], credits=1, limits=limits)


def test_a_forgotten_budget_is_loaded_afresh(store):
    budget = BudgetLimit("account:1", "life", 2 * M, "the account's lifetime budget")
    run(store.seed_budget, budget, 0)
    budget_call(store, 1, [budget], credits=M)
    run(store.forget_budget, budget)
    with pytest.raises(SeedNeeded):
        budget_call(store, 2, [budget], credits=M)
    run(store.settle, "req_1", M, 0, T0)  # the old reservation settles into nothing
    run(store.seed_budget, budget, 2 * M)  # the database has it now
    with pytest.raises(BudgetExceededError):
        budget_call(store, 2, [budget], credits=1)
