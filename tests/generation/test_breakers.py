"""Circuit breakers per upstream deployment (generation/breakers.py): in one process's memory, and
shared by two web processes (two ``Breakers``) through one Redis.

Time is a hand-moved clock: no test waits for a cooldown.
"""

import asyncio
import gc
import logging
import os
import time
import uuid
import warnings
import weakref

import pytest

from generation import breakers as module
from generation.breakers import Breakers

T0 = 1_800_000_000.0
UNREACHABLE = "redis://127.0.0.1:1"


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def run():
    """One event loop per test: a Redis client belongs to the loop it connected in. Closing it
    ends the breakers' refresh tasks, which close their clients."""
    with asyncio.Runner() as runner:
        yield runner.run


@pytest.fixture
def limits(settings):
    settings.BYTESPIKE_BREAKER_FAILURES = 3
    settings.BYTESPIKE_BREAKER_ERROR_RATE = 0.5
    settings.BYTESPIKE_BREAKER_WINDOW_SECONDS = 30
    settings.BYTESPIKE_BREAKER_MIN_CALLS = 10
    settings.BYTESPIKE_BREAKER_COOLDOWN_SECONDS = 10
    settings.BYTESPIKE_BREAKER_MAX_COOLDOWN_SECONDS = 300
    settings.BYTESPIKE_BREAKER_PROBE_TIMEOUT_SECONDS = 30
    return settings


@pytest.fixture
def memory(limits, clock):
    limits.REDIS_URL = ""
    breakers = Breakers()
    breakers.clock = clock
    return breakers


def trips_of(breakers) -> list:
    trips = []
    breakers.on_trip(lambda deployment_id, reason: trips.append((deployment_id, reason)))
    return trips


def fail(run, breakers, times=1, deployment_id=1, retry_after=None):
    for _ in range(times):
        run(breakers.failed(deployment_id, retry_after))


# --- In memory (no REDIS_URL) -----------------------------------------------------------------


def test_it_opens_after_n_consecutive_failures(memory, run):
    fail(run, memory, 2)
    assert run(memory.acquire(1))
    fail(run, memory)
    assert not run(memory.acquire(1))
    assert run(memory.acquire(2))  # the others are not concerned
    state = run(memory.snapshot([1]))[1]
    assert (state.state, state.open_until, state.consecutive_failures) == ("open", T0 + 10, 3)
    assert (state.window_calls, state.window_failures) == (3, 3)


def test_a_success_in_between_resets_the_count(memory, run):
    fail(run, memory, 2)
    run(memory.succeeded(1))
    fail(run, memory, 2)
    assert run(memory.acquire(1))
    fail(run, memory)
    assert not run(memory.acquire(1))


def test_an_error_rate_opens_it_once_there_are_enough_calls(memory, run, limits, clock):
    limits.BYTESPIKE_BREAKER_FAILURES = 100  # only the rate can open it
    trips = trips_of(memory)
    for _ in range(4):
        fail(run, memory)
        run(memory.succeeded(1))
    fail(run, memory)  # 5 of 9 calls failed: 56 %, but fewer than 10 calls
    assert run(memory.acquire(1))
    run(memory.succeeded(1))  # 10 calls, 50 %: a success opens nothing
    assert run(memory.acquire(1))
    fail(run, memory)  # 6 of 11
    assert not run(memory.acquire(1))
    assert trips == [(1, "error rate 55% over 11 calls")]

    # Its probe's success closes it, and the failures that opened it are forgotten.
    clock.advance(10)
    assert run(memory.acquire(1))
    run(memory.succeeded(1))
    fail(run, memory)
    assert run(memory.acquire(1))


def test_calls_older_than_the_window_do_not_count(memory, run, limits, clock):
    limits.BYTESPIKE_BREAKER_FAILURES = 100
    fail(run, memory, 9)
    clock.advance(31)
    fail(run, memory)  # 10 failed calls in all, one of them in the window
    assert run(memory.acquire(1))
    assert run(memory.snapshot([1]))[1].window_calls == 1


def test_the_upstreams_retry_after_lengthens_the_cooldown_up_to_the_cap(memory, run, clock):
    fail(run, memory, 2)
    fail(run, memory, retry_after=60)
    clock.advance(59)
    assert not run(memory.acquire(1))
    assert memory.retry_after([1]) == pytest.approx(1)
    clock.advance(1)
    assert run(memory.acquire(1))

    fail(run, memory, 3, deployment_id=2, retry_after=10_000)
    assert run(memory.snapshot([2]))[2].open_until == clock.now + 300


def test_after_the_cooldown_exactly_one_probe_goes_through(memory, run, clock):
    fail(run, memory, 3)
    clock.advance(9.9)
    assert not run(memory.acquire(1))
    clock.advance(0.1)
    assert run(memory.snapshot([1]))[1].state == "half_open"

    async def many():
        return await asyncio.gather(*(memory.acquire(1) for _ in range(5)))

    assert sorted(run(many())) == [False] * 4 + [True]
    assert not run(memory.acquire(1))
    # A probe that never reports (its process died) is given up after the probe timeout.
    clock.advance(29.9)
    assert not run(memory.acquire(1))
    clock.advance(0.1)
    assert run(memory.acquire(1))


def test_the_probes_success_closes_it(memory, run, clock):
    fail(run, memory, 3)
    clock.advance(10)
    assert run(memory.acquire(1))
    run(memory.succeeded(1))
    assert all(run(memory.acquire(1)) for _ in range(3))
    state = run(memory.snapshot([1]))[1]
    assert (state.state, state.open_until, state.consecutive_failures) == ("closed", None, 0)
    fail(run, memory, 2)  # counted afresh
    assert run(memory.acquire(1))


def test_a_failed_probe_opens_it_again_for_twice_as_long(memory, run, limits, clock):
    limits.BYTESPIKE_BREAKER_MAX_COOLDOWN_SECONDS = 30
    fail(run, memory, 3)
    clock.advance(10)
    assert run(memory.acquire(1))
    fail(run, memory)
    assert memory.retry_after([1]) == 20
    clock.advance(19.9)
    assert not run(memory.acquire(1))
    clock.advance(0.1)
    assert run(memory.acquire(1))
    fail(run, memory)
    assert memory.retry_after([1]) == 30  # 40, capped


def test_only_the_probes_outcome_counts_while_it_is_open(memory, run, clock):
    fail(run, memory, 3)
    run(memory.succeeded(1))  # calls let through before it opened
    assert not run(memory.acquire(1))
    clock.advance(10)
    fail(run, memory)  # half-open, before its probe
    assert run(memory.acquire(1))
    fail(run, memory)  # the probe's
    assert memory.retry_after([1]) == 20


def test_on_trip_is_called_once_per_trip_its_errors_logged(memory, run, clock, breaker_logs):
    def broken(deployment_id, reason):
        raise RuntimeError("alerts are down")

    memory.on_trip(broken)
    trips = trips_of(memory)
    fail(run, memory, 3)
    fail(run, memory, 2)  # calls let through before it opened, ending later
    assert trips == [(1, "3 consecutive failures")]
    clock.advance(10)
    assert run(memory.acquire(1))
    fail(run, memory)
    assert trips == [(1, "3 consecutive failures"), (1, "the half-open probe failed")]
    assert (
        breaker_logs.messages("callback")
        == [f"circuit breaker trip callback {broken!r} failed"] * 2
    )


def test_retry_after_is_the_wait_for_the_first_probe_when_all_are_open(memory, run, clock):
    assert memory.retry_after([1, 2]) is None
    fail(run, memory, 3, deployment_id=1)
    clock.advance(2)
    fail(run, memory, 3, deployment_id=2, retry_after=30)
    assert memory.retry_after([1, 2]) == pytest.approx(8)
    assert memory.retry_after([2]) == pytest.approx(30)
    assert memory.retry_after([1, 3]) is None  # 3 is closed
    clock.advance(8)
    assert memory.retry_after([1, 2]) is None  # 1 may be probed
    assert memory.retry_after([]) is None


def test_reset_forgets_every_breaker(memory, run):
    fail(run, memory, 3)
    memory.reset()
    assert run(memory.acquire(1))


# --- Redis unreachable (no Redis needed) -------------------------------------------------------


@pytest.fixture
def unreachable(limits, clock, monkeypatch):
    """A process pointed at a Redis that refuses connections, asking it again at every call."""
    monkeypatch.setattr(module, "RETRY_REDIS_SECONDS", 0)
    monkeypatch.setattr(module, "REFRESH_SECONDS", 3600)
    breakers = Breakers()
    breakers.clock = clock
    breakers.redis_url = UNREACHABLE
    return breakers


class BreakerLogs:
    """What generation.breakers logs during a test, caught by a handler of its own on that
    logger: pytest's caplog hangs on the root logger, whose level and handlers other tests of
    the same worker (in-process servers and workers configuring logging) may have changed."""

    def __init__(self):
        self.records: list[logging.LogRecord] = []

    def handle(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, text: str) -> list[str]:
        return [r.getMessage() for r in self.records if text in r.getMessage()]


@pytest.fixture
def breaker_logs():
    logs = BreakerLogs()
    handler = logging.Handler(logging.DEBUG)
    handler.emit = logs.handle
    logger = logging.getLogger("generation.breakers")
    saved = logger.level, logger.disabled
    logger.setLevel(logging.DEBUG)
    logger.disabled = False
    logger.addHandler(handler)
    yield logs
    logger.removeHandler(handler)
    logger.level, logger.disabled = saved


def outage_logs(breaker_logs) -> list[str]:
    return breaker_logs.messages("Redis unreachable")


def test_redis_unreachable_falls_back_to_memory_and_says_so_once(
    unreachable, run, clock, breaker_logs
):
    trips = trips_of(unreachable)
    fail(run, unreachable, 3)
    assert not run(unreachable.acquire(1))
    assert trips == [(1, "3 consecutive failures")]
    clock.advance(10)
    assert run(unreachable.acquire(1))
    assert not run(unreachable.acquire(1))
    run(unreachable.succeeded(1))
    assert run(unreachable.snapshot([1]))[1].state == "closed"
    run(unreachable.refresh())
    assert len(outage_logs(breaker_logs)) == 1


def test_a_healthy_deployment_costs_no_redis_round_trip(unreachable, run, breaker_logs):
    for _ in range(20):
        assert run(unreachable.acquire(1))
        run(unreachable.succeeded(1))
    assert outage_logs(breaker_logs) == []


# --- Two web processes sharing one Redis -----------------------------------------------------


@pytest.fixture
def redis_url():
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs REDIS_URL")
    return os.environ["REDIS_URL"]


@pytest.fixture
def prefix(limits, redis_url, run):
    prefix = f"test-breakers-{uuid.uuid4().hex}"
    limits.REDIS_URL = redis_url
    limits.CACHES = {"default": {**limits.CACHES["default"], "KEY_PREFIX": prefix}}
    yield prefix
    run(_drop(redis_url, prefix))


@pytest.fixture
def web(prefix, clock):
    """Two web processes' breakers, on one Redis, with one clock."""
    first, second = Breakers(), Breakers()
    first.clock = second.clock = clock
    return first, second


async def _drop(url, prefix):
    import redis.asyncio

    async with redis.asyncio.Redis.from_url(url) as client:
        async for name in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(name)


async def _keys(url, prefix) -> list[bytes]:
    import redis.asyncio

    async with redis.asyncio.Redis.from_url(url) as client:
        return [name async for name in client.scan_iter(match=f"{prefix}:*")]


def test_failures_counted_by_both_processes_add_up_to_the_trip(web, run):
    a, b = web
    trips_a, trips_b = trips_of(a), trips_of(b)
    fail(run, a)
    fail(run, b)
    assert run(a.acquire(1)) and run(b.acquire(1))
    fail(run, a)
    assert trips_a == [(1, "3 consecutive failures")]
    assert trips_b == []
    assert not run(a.acquire(1))


def test_a_success_in_another_process_resets_the_shared_count(web, run):
    a, b = web
    assert run(b.acquire(1))
    fail(run, a, 2)
    run(b.refresh())  # b learns of the failures...
    run(b.succeeded(1))  # ...so its success resets them
    fail(run, a)
    assert run(a.acquire(1))


def test_the_other_process_refuses_within_a_second_of_the_trip(web, run):
    a, b = web

    async def scenario():
        assert await b.acquire(1)  # b has used the deployment: its refresh task reads it
        for _ in range(3):
            await a.failed(1)
        deadline = time.monotonic() + 1.5
        while await b.acquire(1):
            assert time.monotonic() < deadline, "b still sends calls to an open deployment"
            await asyncio.sleep(0.05)

    run(scenario())


def test_only_one_process_gets_the_half_open_probe(web, run, clock):
    a, b = web
    assert run(b.acquire(1))  # b has used it: its refresh reads it
    fail(run, a, 3)
    run(b.refresh())
    clock.advance(10)

    async def both():
        return await asyncio.gather(a.acquire(1), b.acquire(1), a.acquire(1), b.acquire(1))

    assert sorted(run(both())) == [False, False, False, True]
    assert not run(a.acquire(1)) and not run(b.acquire(1))


def test_a_failure_in_another_process_while_one_probes_changes_nothing(web, run, clock):
    a, b = web
    trips_b = trips_of(b)
    assert run(b.acquire(1))
    fail(run, a, 3)
    run(b.refresh())
    clock.advance(10)
    assert run(a.acquire(1))
    fail(run, b)  # a call b let through before it opened
    assert trips_b == []
    assert b.retry_after([1]) is None  # still half-open
    run(a.succeeded(1))  # the probe's outcome
    run(b.refresh())
    assert run(b.acquire(1))


def test_a_process_waiting_for_anothers_probe_does_not_ask_redis_at_every_call(
    web, run, clock, breaker_logs, monkeypatch
):
    monkeypatch.setattr(module, "RETRY_REDIS_SECONDS", 0)
    a, b = web
    assert run(b.acquire(1))
    fail(run, a, 3)
    run(b.refresh())
    clock.advance(10)
    assert run(a.acquire(1))
    assert not run(b.acquire(1))  # asks Redis once: a probes
    b.redis_url = UNREACHABLE
    assert not any(run(b.acquire(1)) for _ in range(10))
    assert outage_logs(breaker_logs) == []


def test_a_probes_success_closes_it_in_the_other_process_too(web, run, clock, redis_url, prefix):
    a, b = web
    assert run(b.acquire(1))  # b has used it: its refresh reads it
    fail(run, a, 3)
    run(b.refresh())
    clock.advance(10)
    assert run(b.acquire(1))
    assert not run(a.acquire(1))
    run(b.succeeded(1))
    run(a.refresh())
    assert run(a.acquire(1))
    assert run(a.snapshot([1]))[1].state == "closed"
    assert run(_keys(redis_url, prefix)) == []  # a healthy deployment has nothing in Redis


def test_a_failed_probe_opens_it_for_twice_as_long_in_every_process(web, run, clock):
    a, b = web
    trips_b = trips_of(b)
    assert run(b.acquire(1))
    fail(run, a, 3)
    run(b.refresh())
    clock.advance(10)
    assert run(b.acquire(1))
    fail(run, b)
    assert trips_b == [(1, "the half-open probe failed")]
    run(a.refresh())
    assert a.retry_after([1]) == pytest.approx(20)
    clock.advance(20)
    assert run(a.acquire(1))


def test_a_probe_that_never_reports_is_given_up(web, run, clock, limits):
    limits.BYTESPIKE_BREAKER_PROBE_TIMEOUT_SECONDS = 0.2
    a, b = web
    assert run(b.acquire(1))  # b has used it: its refresh reads it
    fail(run, a, 3)
    run(b.refresh())
    clock.advance(10)
    assert run(a.acquire(1))  # and a dies
    assert not run(b.acquire(1))
    time.sleep(0.25)  # the probe's expiry is Redis's own clock
    clock.advance(0.25)
    assert run(b.acquire(1))


def test_a_snapshot_reads_redis(web, run):
    a, b = web
    fail(run, a, 3)
    states = run(b.snapshot([1, 2]))
    assert (states[1].state, states[1].open_until, states[1].consecutive_failures) == (
        "open", T0 + 10, 3,
    )  # fmt: skip
    assert (states[1].window_calls, states[2].state) == (0, "closed")  # b's window: no calls


def test_redis_answering_again_is_the_truth_again(web, run, breaker_logs, monkeypatch):
    monkeypatch.setattr(module, "RETRY_REDIS_SECONDS", 0)
    a, b = web
    a.redis_url = UNREACHABLE
    fail(run, a, 3)  # opened in a's memory only
    assert not run(a.acquire(1))
    a.redis_url = None  # Redis is back
    fail(run, b, 2)
    run(a.refresh())
    assert run(a.acquire(1))
    fail(run, a)  # the third failure in Redis
    run(b.refresh())
    assert not run(b.acquire(1))
    assert breaker_logs.messages("Redis answers again")


def test_the_refresh_task_ends_quietly_with_its_event_loop(web, redis_url, caplog):
    a, _ = web
    loops = []

    async def scenario():
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await a.acquire(1)
        await a.failed(1)  # connects

    caplog.set_level(logging.DEBUG)
    gc.collect()  # what earlier tests left to the collector is theirs: collected before we look
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(scenario())
        gc.collect()
    assert loops[0]() is None  # the finished loop was let go
    # Unclosed loops, tasks or Redis connections; not files another test left to the collector.
    assert [str(w.message) for w in caught if not str(w.message).startswith("unclosed file")] == []
    # Its own complaints only: under a loaded machine other loggers may warn about slowness.
    assert [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name == "generation.breakers"
    ] == []
