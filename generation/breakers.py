"""A circuit breaker per upstream deployment, so that failover skips a deployment that is failing
instead of sending it a share of every request.

The router asks ``acquire`` before an attempt (False: skip this deployment) and reports the
outcome with ``succeeded`` or ``failed``. A breaker is

- **closed**: calls go through. It opens after ``BYTESPIKE_BREAKER_FAILURES`` consecutive
  failures, or when this process sees an error rate of at least ``BYTESPIKE_BREAKER_ERROR_RATE``
  over its last ``BYTESPIKE_BREAKER_WINDOW_SECONDS`` with at least ``BYTESPIKE_BREAKER_MIN_CALLS``
  calls in them;
- **open**: no call goes through for the cooldown: ``BYTESPIKE_BREAKER_COOLDOWN_SECONDS``, or the
  upstream's Retry-After if longer, at most ``BYTESPIKE_BREAKER_MAX_COOLDOWN_SECONDS``;
- **half-open** once the cooldown is over: one call at a time, the probe, goes through. Its
  success closes the breaker; its failure opens it again for twice the last cooldown (capped).
  A probe that never reports (its process died) is given up after
  ``BYTESPIKE_BREAKER_PROBE_TIMEOUT_SECONDS`` and another one goes through.

While a breaker is open or half-open only the probe's outcome counts: calls let through before it
opened that end later change nothing. A process that holds the probe takes the next outcome it
hears of for that deployment as the probe's.

Sharing across web processes (``REDIS_URL`` set): the consecutive-failure count and the open
state live in Redis, in a hash ``{prefix}:breaker:{id}`` (deleted when the breaker closes: a
healthy deployment has no key), and the probe in ``{prefix}:breaker:{id}:probe`` (SET NX PX), each
change one round trip (a Lua script). ``acquire`` of a closed or cooling-down breaker answers from
memory; a task per event loop reads, once a second, what Redis holds for the deployments this
process has used (one pipeline), so a breaker another process opened or closed is seen here
within a second. A success writes to Redis only if this process knows of failures to reset.
The error-rate window is each process's own: counting every call in Redis would cost a round trip
per call, and each process sees its share of the same traffic. A trip it causes is shared.

If Redis cannot be reached, each process goes on with its own memory (logged once per outage) and
tries Redis again a second later; once Redis answers, what it holds is the truth again. Without
``REDIS_URL`` (one web process, the embedded default) everything is in memory.
"""

import asyncio
import contextlib
import contextvars
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis.asyncio
import redis.exceptions
from django.conf import settings
from redis.commands.core import AsyncScript

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0
# After a Redis error, calls use this process's memory alone for this long (a Redis that hangs
# must not add its timeout to every call); the refresh task keeps trying meanwhile.
RETRY_REDIS_SECONDS = 1.0
# A deployment whose breaker nobody changed for a day starts afresh.
KEEP_MS = 86_400_000
REDIS_ERRORS = (redis.exceptions.RedisError, OSError)

# Times are the caller's, in epoch milliseconds: every process's clock is taken to agree, and
# tests move theirs by hand. Returns {"closed" | "open" | "probe" | "busy", open_until, probe ms
# left (busy)}.
_ACQUIRE = """
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until'))
if not open_until then return {'closed', 0, 0} end
if open_until > tonumber(ARGV[1]) then return {'open', open_until, 0} end
if redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[2]) then return {'probe', open_until, 0} end
return {'busy', open_until, redis.call('PTTL', KEYS[2])}
"""

# ARGV: now, failures to trip, cooldown, max cooldown, Retry-After (ms), "1" if this process's
# window trips it, "1" if this is the probe's outcome. Returns {why it tripped ("": it did not),
# open_until (0: closed), cooldown, consecutive failures}; only the call that trips it says why.
_FAILED = """
local now = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'open_until', 'cooldown', 'failures')
local open_until, cooldown = tonumber(state[1]), tonumber(state[2])
local failures = tonumber(state[3]) or 0
if open_until and (ARGV[7] ~= '1' or open_until > now) then
  return {'', open_until, cooldown, failures}
end
local reason
if open_until then
  reason = 'probe'
  cooldown = math.max(cooldown * 2, tonumber(ARGV[3]), tonumber(ARGV[5]))
else
  failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  if failures >= tonumber(ARGV[2]) then
    reason = 'failures'
  elseif ARGV[6] == '1' then
    reason = 'error_rate'
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[8])
    return {'', 0, 0, failures}
  end
  cooldown = math.max(tonumber(ARGV[3]), tonumber(ARGV[5]))
end
cooldown = math.min(cooldown, tonumber(ARGV[4]))
open_until = now + cooldown
redis.call('HSET', KEYS[1], 'open_until', open_until, 'cooldown', cooldown)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('DEL', KEYS[2])
return {reason, open_until, cooldown, failures}
"""

# A success while closed: the failures counted so far are no longer consecutive.
_RESET = """
if redis.call('HEXISTS', KEYS[1], 'open_until') == 0 then redis.call('DEL', KEYS[1]) end
"""


@dataclass(frozen=True)
class BreakerState:
    state: str  # "closed" | "open" | "half_open"
    open_until: float | None  # epoch seconds
    consecutive_failures: int
    window_calls: int  # this process's, over the last BYTESPIKE_BREAKER_WINDOW_SECONDS
    window_failures: int


class _Window:
    """This process's calls and failures over the last seconds, in one-second buckets (memory
    stays small however busy the deployment)."""

    def __init__(self):
        self._buckets: deque[list[int]] = deque()  # [second, calls, failures]
        self.calls = 0
        self.failures = 0

    def add(self, now: float, failed: bool) -> None:
        self.trim(now)
        second = int(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        self.calls += 1
        if failed:
            bucket[2] += 1
            self.failures += 1

    def trim(self, now: float) -> None:
        start = now - settings.BYTESPIKE_BREAKER_WINDOW_SECONDS
        while self._buckets and self._buckets[0][0] + 1 <= start:
            _, calls, failures = self._buckets.popleft()
            self.calls -= calls
            self.failures -= failures

    def clear(self) -> None:
        self._buckets.clear()
        self.calls = self.failures = 0

    def trip_reason(self) -> str:
        """Why the error rate opens the breaker ("": it does not)."""
        if self.calls < settings.BYTESPIKE_BREAKER_MIN_CALLS:
            return ""
        if self.failures < self.calls * settings.BYTESPIKE_BREAKER_ERROR_RATE:
            return ""
        return f"error rate {self.failures / self.calls:.0%} over {self.calls} calls"


@dataclass
class _Breaker:
    """What this process knows of one deployment's breaker."""

    consecutive: int = 0
    open_until: float | None = None  # None: closed
    cooldown: float = 0.0
    probe_until: float = 0.0  # a probe, this process's or another's, is out until then
    probing: bool = False  # this process holds the probe
    # When a call of this process last heard from Redis about it (Breakers._stamps): a refresh
    # read that began before must not undo what the call learned.
    changed: int = 0
    window: _Window = field(default_factory=_Window)

    def open(self, until: float, cooldown: float) -> None:
        self.open_until, self.cooldown = until, cooldown
        self.probing, self.probe_until = False, 0.0

    def close(self) -> None:
        self.open_until, self.cooldown, self.consecutive = None, 0.0, 0
        self.probing, self.probe_until = False, 0.0
        # The failures that opened it must not open it again at the next one.
        self.window.clear()

    def fail(self, now: float, retry_after: float, window_reason: str) -> str:
        """Count a failure in memory (the same rules as ``_FAILED``): why it opened, or ""."""
        if self.open_until is not None and (not self.probing or now < self.open_until):
            return ""
        if self.open_until is not None:
            reason = "probe"
            cooldown = max(self.cooldown * 2, settings.BYTESPIKE_BREAKER_COOLDOWN_SECONDS,
                           retry_after)  # fmt: skip
        else:
            self.consecutive += 1
            if self.consecutive >= settings.BYTESPIKE_BREAKER_FAILURES:
                reason = "failures"
            elif window_reason:
                reason = "error_rate"
            else:
                return ""
            cooldown = max(settings.BYTESPIKE_BREAKER_COOLDOWN_SECONDS, retry_after)
        cooldown = min(cooldown, settings.BYTESPIKE_BREAKER_MAX_COOLDOWN_SECONDS)
        self.open(now + cooldown, cooldown)
        return reason

    def learn(self, open_until_ms: int, cooldown_ms: int, failures: int) -> None:
        """Take what Redis holds."""
        if not open_until_ms:
            if self.open_until is not None:
                self.close()
        elif self.open_until != open_until_ms / 1000:
            self.open(open_until_ms / 1000, cooldown_ms / 1000)
        self.consecutive = failures

    def state(self, now: float) -> BreakerState:
        self.window.trim(now)
        if self.open_until is None:
            name = "closed"
        else:
            name = "open" if now < self.open_until else "half_open"
        return BreakerState(name, self.open_until, self.consecutive, self.window.calls,
                            self.window.failures)  # fmt: skip


@dataclass
class _Connection:
    """An event loop's Redis client (a client belongs to the loop it connected in), its scripts
    and the key prefix it was made for."""

    client: redis.asyncio.Redis
    prefix: str
    acquire: AsyncScript
    failed: AsyncScript
    reset: AsyncScript

    def keys(self, deployment_id: int) -> list[str]:
        state = f"{self.prefix}:breaker:{deployment_id}"
        return [state, f"{state}:probe"]


class Breakers:
    """The breakers of every deployment, as this process knows them (``breakers``: the one).
    Tests replace ``clock`` (epoch seconds) and point ``redis_url`` elsewhere."""

    def __init__(self):
        self.clock: Callable[[], float] = time.time
        self.redis_url: str | None = None  # None: settings.REDIS_URL
        self._breakers: dict[int, _Breaker] = {}
        self._used: set[int] = set()  # what the refresh task reads from Redis
        self._callbacks: list[Callable[[int, str], None]] = []
        # Sync views run event loops in threads of their own, all sharing this process's state.
        self._lock = threading.Lock()
        self._stamps = itertools.count(1)
        self._connections: dict[tuple, _Connection] = {}
        self._refreshers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
        self._redis_down = False
        self._retry_redis_at = 0.0  # time.monotonic()

    # --- What the router calls -------------------------------------------------------------

    async def acquire(self, deployment_id: int) -> bool:
        """May an attempt go to this deployment now? Closed, or open and cooling down: answered
        from memory. Half-open: True for one caller at a time across processes (the probe)."""
        if self._url():
            self._watch(deployment_id)
        breaker = self._breakers.get(deployment_id)
        if breaker is None or breaker.open_until is None:
            return True
        now = self.clock()
        if now < breaker.open_until or now < breaker.probe_until:
            return False
        return await self._admit_probe(deployment_id, breaker, now)

    async def succeeded(self, deployment_id: int) -> None:
        """The attempt succeeded: the failures so far are not consecutive any more; a probe's
        success closes the breaker everywhere."""
        if self._url():
            self._watch(deployment_id)
        with self._lock:
            breaker = self._breaker(deployment_id)
            breaker.window.add(self.clock(), failed=False)
            if breaker.open_until is None:
                if not breaker.consecutive:
                    return
                breaker.consecutive = 0
                closing = False
            elif breaker.probing:
                breaker.close()
                closing = True
            else:
                return
        if not self._shared():
            return
        connection = self._connection()
        keys = connection.keys(deployment_id)
        try:
            if closing:
                await connection.client.delete(*keys)
            else:
                await connection.reset(keys=keys[:1])
        except REDIS_ERRORS as error:
            self._lost(error)
        else:
            self._heard()
        breaker.changed = next(self._stamps)

    async def failed(self, deployment_id: int, retry_after: float | None = None) -> None:
        """The attempt failed (``retry_after``: the upstream's Retry-After, seconds). Counts it
        among the consecutive failures (shared through Redis) and in this process's window; opens
        the breaker on either's threshold, or again, for twice as long, if it was the probe."""
        if self._url():
            self._watch(deployment_id)
        now = self.clock()
        retry_after = retry_after or 0.0
        with self._lock:
            breaker = self._breaker(deployment_id)
            breaker.window.add(now, failed=True)
            window_reason = breaker.window.trip_reason()
            probing = breaker.probing
        reason = None
        if self._shared():
            connection = self._connection()
            try:
                outcome = await connection.failed(
                    keys=connection.keys(deployment_id),
                    args=[
                        _ms(now), settings.BYTESPIKE_BREAKER_FAILURES,
                        _ms(settings.BYTESPIKE_BREAKER_COOLDOWN_SECONDS),
                        _ms(settings.BYTESPIKE_BREAKER_MAX_COOLDOWN_SECONDS), _ms(retry_after),
                        int(bool(window_reason)), int(probing), KEEP_MS,
                    ],
                )  # fmt: skip
            except REDIS_ERRORS as error:
                self._lost(error)
            else:
                self._heard()
                reason, open_until_ms, cooldown_ms, failures = outcome
                reason = reason.decode()
                with self._lock:
                    breaker.learn(open_until_ms, cooldown_ms, failures)
                    breaker.changed = next(self._stamps)
        if reason is None:  # memory only
            with self._lock:
                reason = breaker.fail(now, retry_after, window_reason)
        if reason:
            self._tripped(deployment_id, _describe(reason, breaker.consecutive, window_reason))

    def retry_after(self, deployment_ids: Iterable[int]) -> float | None:
        """Seconds until the first of these deployments may be probed; None if any of them is
        not open (closed or half-open), or there are none."""
        now = self.clock()
        waits = []
        for deployment_id in deployment_ids:
            breaker = self._breakers.get(deployment_id)
            if breaker is None or breaker.open_until is None or breaker.open_until <= now:
                return None
            waits.append(breaker.open_until - now)
        return min(waits, default=None)

    async def snapshot(self, deployment_ids: Iterable[int]) -> dict[int, BreakerState]:
        """The state of these deployments' breakers (an operator page): from Redis when it is
        configured and answers, else this process's memory. Window counts are this process's."""
        deployment_ids = list(deployment_ids)
        if self._shared():
            await self._pull(deployment_ids)
        now = self.clock()
        with self._lock:
            return {
                deployment_id: self._breakers.get(deployment_id, _Breaker()).state(now)
                for deployment_id in deployment_ids
            }

    def on_trip(self, callback: Callable[[int, str], None]) -> None:
        """Call ``callback(deployment_id, reason)`` whenever this process opens a breaker (once
        per trip, in the process that tripped it). Its exceptions are logged, not raised."""
        self._callbacks.append(callback)

    def reset(self) -> None:
        """Forget every breaker (tests: deployment ids repeat). Trip callbacks stay registered:
        they are wiring, not state."""
        with self._lock:
            self._breakers.clear()
            self._used.clear()
            self._redis_down = False
            self._retry_redis_at = 0.0

    async def refresh(self) -> None:
        """Learn from Redis the state of the deployments this process has used. Each event loop's
        refresh task does this every second; tests call it to skip the wait."""
        if self._shared():
            await self._pull(list(self._used))

    # --- Inside ------------------------------------------------------------------------------

    def _breaker(self, deployment_id: int) -> _Breaker:
        breaker = self._breakers.get(deployment_id)
        if breaker is None:
            breaker = self._breakers[deployment_id] = _Breaker()
        return breaker

    async def _admit_probe(self, deployment_id: int, breaker: _Breaker, now: float) -> bool:
        probe_timeout = settings.BYTESPIKE_BREAKER_PROBE_TIMEOUT_SECONDS
        if self._shared():
            connection = self._connection()
            try:
                kind, open_until_ms, busy_ms = await connection.acquire(
                    keys=connection.keys(deployment_id), args=[_ms(now), _ms(probe_timeout)]
                )
            except REDIS_ERRORS as error:
                self._lost(error)
            else:
                self._heard()
                with self._lock:
                    breaker.changed = next(self._stamps)
                    if kind == b"closed":  # another process's probe closed it
                        breaker.close()
                        return True
                    if kind == b"open":  # another process's probe failed
                        breaker.open(open_until_ms / 1000, breaker.cooldown)
                        return False
                    if kind == b"busy":  # ask again when that probe has had its time
                        breaker.probe_until = now + max(busy_ms, 0) / 1000
                        return False
                    breaker.probing, breaker.probe_until = True, now + probe_timeout
                    return True
        with self._lock:
            if now < breaker.probe_until:  # another thread's call took it meanwhile
                return False
            breaker.probing, breaker.probe_until = True, now + probe_timeout
            return True

    def _tripped(self, deployment_id: int, reason: str) -> None:
        logger.warning("circuit breaker of deployment %s opened: %s", deployment_id, reason)
        for callback in list(self._callbacks):
            try:
                callback(deployment_id, reason)
            except Exception:
                logger.exception("circuit breaker trip callback %r failed", callback)

    # --- Redis -------------------------------------------------------------------------------

    def _url(self) -> str:
        return settings.REDIS_URL if self.redis_url is None else self.redis_url

    def _shared(self) -> bool:
        return bool(self._url()) and time.monotonic() >= self._retry_redis_at

    def _lost(self, error: Exception) -> None:
        self._retry_redis_at = time.monotonic() + RETRY_REDIS_SECONDS
        if not self._redis_down:
            self._redis_down = True
            logger.warning(
                "circuit breakers: Redis unreachable (%r); each web process counts on its own "
                "until it answers",
                error,
            )

    def _heard(self) -> None:
        if self._redis_down:
            self._redis_down = False
            logger.warning("circuit breakers: Redis answers again; its state is shared again")

    def _watch(self, deployment_id: int) -> None:
        """Have this event loop's refresh task read this deployment's state from now on."""
        self._used.add(deployment_id)
        loop = asyncio.get_running_loop()
        if loop not in self._refreshers:
            self._start_refresher(loop)

    def _start_refresher(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if loop in self._refreshers:
                return
            # A loop closed without ending its tasks never ran their cleanup: drop what it had.
            for closed in [other for other in self._refreshers if other.is_closed()]:
                del self._refreshers[closed]
            for key in [key for key in self._connections if key[0].is_closed()]:
                del self._connections[key]
            self._refreshers[loop] = loop.create_task(
                self._refresh_every_second(loop), context=contextvars.Context()
            )

    async def _refresh_every_second(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until the loop ends (its tasks are cancelled): then close the loop's Redis clients,
        quietly, and let go of the loop."""
        try:
            while True:
                await asyncio.sleep(REFRESH_SECONDS)
                try:
                    await self.refresh()
                except Exception:
                    logger.warning("circuit breaker refresh failed; trying again", exc_info=True)
        finally:
            with self._lock:
                self._refreshers.pop(loop, None)
                mine = [key for key in self._connections if key[0] is loop]
                connections = [self._connections.pop(key) for key in mine]
            for connection in connections:
                with contextlib.suppress(*REDIS_ERRORS):
                    await connection.client.aclose()

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if loop not in self._refreshers:  # it closes the connection when the loop ends
            self._start_refresher(loop)
        url, prefix = self._url(), _prefix()
        connection = self._connections.get((loop, url, prefix))
        if connection is None:
            client = redis.asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            connection = self._connections[(loop, url, prefix)] = _Connection(
                client, prefix, client.register_script(_ACQUIRE),
                client.register_script(_FAILED), client.register_script(_RESET),
            )  # fmt: skip
        return connection

    async def _pull(self, deployment_ids: list[int]) -> None:
        """Take what Redis holds for these deployments, unless a call of this process changed
        one since the read began (its answer is newer)."""
        if not deployment_ids:
            return
        connection = self._connection()
        pipeline = connection.client.pipeline(transaction=False)
        for deployment_id in deployment_ids:
            pipeline.hmget(connection.keys(deployment_id)[0], "open_until", "cooldown", "failures")
        started = next(self._stamps)
        try:
            rows = await pipeline.execute()
        except REDIS_ERRORS as error:
            self._lost(error)
            return
        self._heard()
        with self._lock:
            for deployment_id, (open_until, cooldown, failures) in zip(
                deployment_ids, rows, strict=True
            ):
                breaker = self._breakers.get(deployment_id)
                if breaker is None:
                    if open_until is None and failures is None:  # nothing known anywhere
                        continue
                    breaker = self._breakers[deployment_id] = _Breaker()
                elif breaker.changed > started:
                    continue
                breaker.learn(int(open_until or 0), int(cooldown or 0), int(failures or 0))


def _prefix() -> str:
    # The cache's prefix: deployments sharing a Redis (and parallel test workers) stay apart.
    return settings.CACHES["default"].get("KEY_PREFIX") or settings.BYTESPIKE_CACHE_PREFIX


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _describe(reason: str, failures: int, window_reason: str) -> str:
    if reason == "failures":
        return f"{failures} consecutive failures"
    if reason == "error_rate":
        return window_reason
    return "the half-open probe failed"


breakers = Breakers()
