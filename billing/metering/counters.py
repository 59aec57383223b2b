"""Counters that admit calls against their key's limits and their account's concurrency, in one
atomic step: in this process's memory on the embedded default (one web process), in Redis when
``REDIS_URL`` is set (one Lua script, one round trip, shared by every web process).

Both stores keep the same state per key (per version of its limits: an edit starts afresh):

- what the key's calls reserved and have in flight (``res``, ``inflight``);
- its charged spend: a lifetime ``total`` and five-minute buckets, with a running sum per credit
  window (5h, 1d, 7d) that drops buckets as they leave it; seeded from the database
  (``KeyTotal``, ``KeySpend``) the first time a key with a quota or a cap is seen;
- calls and tokens per second over the last minute (rpm, tpm), the same way;

and per account the calls in flight. A reservation is written down under its owner (a web
process, or the tasks): when an owner dies, what it reserved is given back (``reclaim``).

Settling or releasing a reservation twice changes nothing: the record of it is consumed.
"""

import logging
import threading
import time
from dataclasses import dataclass, field

from billing.metering.limits import (
    BUCKET_SECONDS,
    MINUTE,
    WINDOWS,
    BudgetLimit,
    Headroom,
    KeyLimits,
    LimitState,
    refusal,
)

logger = logging.getLogger(__name__)

WINDOW_SECONDS = {name: seconds for name, seconds, _ in WINDOWS}
CREDIT_LIMITS = {"quota", "budget", *WINDOW_SECONDS}
LONGEST = max(WINDOW_SECONDS.values())


@dataclass(frozen=True)
class Reservation:
    """What one call (or task) reserved: credits and tokens against its key, a slot in flight
    against its key and account."""

    id: str
    account_id: int
    limits: KeyLimits | None  # None: the key has no limit of its own
    credits: int = 0
    tokens: int = 0
    second: int = 0  # when it was admitted (the tpm bucket its tokens are in)
    in_flight: bool = True  # tasks reserve credits but are no call in flight
    budgets: tuple[BudgetLimit, ...] = ()  # the hard budgets it counts against


@dataclass(frozen=True)
class Seed:
    """A key's charged spend as the database has it."""

    total: int
    buckets: dict[int, int]  # five-minute bucket start (unix s) -> credits


class SeedNeeded(Exception):
    """The store has no spend yet for this key (``key``) or for these budgets: load it and admit
    again (``Seed``; a budget's spend in its period)."""

    def __init__(self, key: bool = True, budgets: tuple[BudgetLimit, ...] = ()):
        super().__init__()
        self.key = key
        self.budgets = budgets


# --- Rolling sums ----------------------------------------------------------------------------


@dataclass
class Rolling:
    """A running sum of the buckets from ``start`` on; ``start`` is the oldest bucket that still
    counts and holds something (so it also says when the sum next goes down)."""

    step: int
    span: int
    total: int = 0
    start: int = 0

    def advance(self, buckets: dict[int, int], now: int) -> None:
        """Drop the buckets that left the window; then skip empty ones, so that ``start`` is
        the oldest bucket with something in it. (The Lua script does the same.)"""
        first = -(-(now - self.span) // self.step) * self.step  # the oldest bucket in the window
        current = now - now % self.step
        if first - self.start > self.span:  # idle longer than the window: count it again
            self.total = sum(buckets.get(b, 0) for b in range(first, current + 1, self.step))
            self.start = first
        while self.start < current and (self.start < first or not buckets.get(self.start)):
            if self.start < first:
                self.total -= buckets.get(self.start, 0)
            self.start += self.step

    def add(self, bucket: int, amount: int) -> None:
        if bucket >= self.start:
            self.total += amount

    def reset(self, now: int) -> int:
        """When the oldest spend still counted leaves the window (unix s)."""
        return max(self.start + self.span + 1, now + 1)


# --- Process memory --------------------------------------------------------------------------


@dataclass
class _KeyState:
    seeded: bool = False
    total: int = 0
    res: int = 0
    inflight: int = 0
    buckets: dict[int, int] = field(default_factory=dict)
    windows: dict[str, Rolling] = field(default_factory=dict)
    calls: dict[int, int] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    rpm: Rolling = field(default_factory=lambda: Rolling(1, MINUTE))
    tpm: Rolling = field(default_factory=lambda: Rolling(1, MINUTE))

    def __post_init__(self):
        for name, seconds in WINDOW_SECONDS.items():
            self.windows[name] = Rolling(BUCKET_SECONDS, seconds)


@dataclass
class _Spend:
    """A budget's charged spend in its period, and what calls in flight reserved against it."""

    total: int = 0
    res: int = 0


class MemoryCounters:
    """The counters of the one web process of the embedded default. Admission runs in the event
    loop without awaiting, so it is atomic."""

    def __init__(self):
        self._keys: dict[tuple[int, str], _KeyState] = {}
        self._accounts: dict[int, int] = {}
        self._reservations: dict[str, Reservation] = {}
        self._spends: dict[str, _Spend] = {}  # by BudgetLimit.counter: only seeded ones

    async def seed_budget(self, budget: BudgetLimit, total: int) -> None:
        self._spends.setdefault(budget.counter, _Spend(total=total))

    async def forget_budget(self, budget: BudgetLimit) -> None:
        self._spends.pop(budget.counter, None)

    def _state(self, limits: KeyLimits) -> _KeyState:
        return self._keys.setdefault((limits.key_id, limits.version), _KeyState())

    def _known(self, limits: KeyLimits | None) -> _KeyState | None:
        return self._keys.get((limits.key_id, limits.version)) if limits else None

    async def seed(self, limits: KeyLimits, seed: Seed, now: float) -> None:
        state = self._state(limits)
        if state.seeded:
            return
        state.seeded, state.total = True, seed.total
        state.buckets = dict(seed.buckets)
        second = int(now)
        for rolling in state.windows.values():
            rolling.start = 0
            rolling.advance(state.buckets, second)

    async def admit(self, reservation: Reservation, account_limit: int, now: float) -> LimitState:
        second = int(now)
        limits = reservation.limits
        state = self._state(limits) if limits else None
        key_unseeded = bool(limits and limits.counts_spend and not state.seeded)
        budgets_unseeded = tuple(b for b in reservation.budgets if b.counter not in self._spends)
        if key_unseeded or budgets_unseeded:
            raise SeedNeeded(key_unseeded, budgets_unseeded)
        if reservation.id in self._reservations:
            return LimitState()  # admitted before (a retried submit): once is enough
        if reservation.in_flight:
            used = self._accounts.get(reservation.account_id, 0)
            if used >= account_limit:
                raise refusal(Headroom("concurrency", account_limit, 0, second + 1), second)
        checks: list[Headroom] = []
        quota_left = None
        if state is not None:
            used = state.total + state.res
            if limits.quota:
                quota_left = limits.quota - used
                checks.append(Headroom("quota", limits.quota, quota_left, 0))
            for name, _, cap in limits.caps:
                rolling = state.windows[name]
                rolling.advance(state.buckets, second)
                left = cap - rolling.total - state.res
                checks.append(Headroom(name, cap, left, rolling.reset(second)))
            if limits.rpm:
                state.rpm.advance(state.calls, second)
                left = limits.rpm - state.rpm.total
                checks.append(Headroom("rpm", limits.rpm, left, state.rpm.reset(second)))
            if limits.tpm:
                state.tpm.advance(state.tokens, second)
                left = limits.tpm - state.tpm.total
                checks.append(Headroom("tpm", limits.tpm, left, state.tpm.reset(second)))
            if limits.max_concurrent and reservation.in_flight:
                left = limits.max_concurrent - state.inflight
                checks.append(Headroom("concurrency", limits.max_concurrent, left, second + 1))
        for budget in reservation.budgets:
            spend = self._spends[budget.counter]
            left = budget.limit - spend.total - spend.res
            checks.append(Headroom("budget", budget.limit, left, budget.reset, budget.label))
        for headroom in checks:
            # A credit limit must fit the call's worst case (no quota or cap goes below zero);
            # the others need room for one more call.
            need = reservation.credits if headroom.name in CREDIT_LIMITS else 0
            if headroom.remaining < max(need, 1):
                raise refusal(headroom, second)
        # Admitted: reserve.
        self._reservations[reservation.id] = reservation
        if reservation.in_flight:
            self._accounts[reservation.account_id] = (
                self._accounts.get(reservation.account_id, 0) + 1
            )
        for budget in reservation.budgets:
            self._spends[budget.counter].res += reservation.credits
        if state is not None:
            state.res += reservation.credits
            state.inflight += 1 if reservation.in_flight else 0
            state.calls[second] = state.calls.get(second, 0) + 1
            state.rpm.add(second, 1)
            state.tokens[second] = state.tokens.get(second, 0) + reservation.tokens
            state.tpm.add(second, reservation.tokens)
            _prune(state.calls, second - 2 * MINUTE)
            _prune(state.tokens, second - 2 * MINUTE)
            _prune(state.buckets, second - LONGEST - 2 * BUCKET_SECONDS)
        return _limit_state(reservation, quota_left, checks)

    async def settle(self, reservation_id: str, credits: int, tokens: int, now: float,
                     owner: str | None = None) -> None:  # fmt: skip
        reservation = self._reservations.pop(reservation_id, None)
        if reservation is None:
            return
        self._free(reservation, tokens)
        for budget in reservation.budgets:
            spend = self._spends.get(budget.counter)
            if spend is not None:
                spend.total += credits
        state = self._known(reservation.limits)
        if state is not None and state.seeded and credits:
            second = int(now)
            bucket = second - second % BUCKET_SECONDS
            state.total += credits
            state.buckets[bucket] = state.buckets.get(bucket, 0) + credits
            for rolling in state.windows.values():
                rolling.add(bucket, credits)

    async def release(self, reservation_id: str, owner: str | None = None) -> None:
        reservation = self._reservations.pop(reservation_id, None)
        if reservation is not None:
            self._free(reservation, 0)

    def _free(self, reservation: Reservation, tokens_used: int) -> None:
        if reservation.in_flight:
            self._accounts[reservation.account_id] -= 1
        for budget in reservation.budgets:
            spend = self._spends.get(budget.counter)
            if spend is not None:  # forgotten (forget_budget): loaded afresh, with this call
                spend.res -= reservation.credits
        state = self._known(reservation.limits)
        if state is None:  # no limits, or forgotten (forget_key): its spend is loaded afresh
            return
        state.res -= reservation.credits
        state.inflight -= 1 if reservation.in_flight else 0
        correction = tokens_used - reservation.tokens
        if correction and reservation.second >= state.tpm.start:
            state.tokens[reservation.second] = state.tokens.get(reservation.second, 0) + correction
            state.tpm.add(reservation.second, correction)

    async def open_reservations(self, owner: str) -> dict[str, int]:
        """The owner's reservations (``tasks``: those of tasks), and when each was made."""
        tasks = owner == "tasks"
        return {r: v.second for r, v in self._reservations.items() if v.in_flight != tasks}

    async def reclaim_dead(self) -> int:
        return 0  # one process: its reservations die with it

    async def forget_key(self, limits: KeyLimits) -> None:
        """Drop the key's spend: it is seeded from the database again."""
        self._keys.pop((limits.key_id, limits.version), None)


def _prune(buckets: dict[int, int], before: int) -> None:
    """Forget buckets no window reaches any more (now and then: when there are many)."""
    if len(buckets) > 64 and min(buckets) < before:
        for bucket in [b for b in buckets if b < before]:
            del buckets[bucket]


def _limit_state(
    reservation: Reservation, quota_left: int | None, checks: list[Headroom]
) -> LimitState:
    """What is left of each limit once this call is counted (its reservation, for credits and
    tokens), and the tightest of the rolling ones."""
    taken = {"rpm": 1, "concurrency": 1, "tpm": reservation.tokens}
    after = [
        Headroom(h.name, h.limit, h.remaining - taken.get(h.name, reservation.credits), h.reset,
                 h.label)
        for h in checks
        if h.name != "quota"
    ]  # fmt: skip
    tightest = min(after, key=lambda h: h.share_left, default=None)
    budget = min((h for h in after if h.name == "budget"), key=lambda h: h.remaining, default=None)
    if quota_left is not None:
        quota_left -= reservation.credits
    return LimitState(quota_remaining=quota_left, tightest=tightest, budget=budget)


def now() -> float:
    return time.time()


# --- Redis -----------------------------------------------------------------------------------
# One hash per key and version of its limits (seeded, total, res, inflight, b:<bucket> credits,
# w<name>:sum / :from, r:<second> calls, t:<second> tokens, r:sum / :from, t:sum / :from), one
# per account (inflight), and one per owner of reservations (id -> what to give back).

_LUA_COMMON = """
local function num(h, f) return tonumber(redis.call('HGET', h, f) or '0') end

-- Rolling.advance of counters.py: drop buckets that left the window, skip empty ones.
local function advance(h, name, prefix, step, span, now, prune)
  local first = math.ceil((now - span) / step) * step
  local current = now - now % step
  local total = num(h, name .. ':sum')
  local start = num(h, name .. ':from')
  if first - start > span then
    total = 0
    for b = first, current, step do total = total + num(h, prefix .. b) end
    start = first
  end
  while start < current and (start < first or num(h, prefix .. start) == 0) do
    if start < first then
      total = total - num(h, prefix .. start)
      if prune then redis.call('HDEL', h, prefix .. start) end
    end
    start = start + step
  end
  redis.call('HSET', h, name .. ':sum', total, name .. ':from', start)
  return total, start
end

local function add(h, name, prefix, bucket, amount)
  if amount == 0 then return end
  redis.call('HINCRBY', h, prefix .. bucket, amount)
  if bucket >= num(h, name .. ':from') then redis.call('HINCRBY', h, name .. ':sum', amount) end
end
"""

# KEYS: key hash ('' = no key limits), account hash, owner's reservations hash, then one hash
#       per hard budget (its spend in its period).
# ARGV: id, now, in_flight, credits, tokens, account_limit, quota, cap_5h, cap_1d, cap_7d, rpm,
#       tpm, max_concurrent, counts_spend, record, ttl, then each budget's limit, then each
#       budget's reset.
# Returns {'ok', quota_left or '', then name, limit, remaining, reset per rolling check...},
#         {'refused', name, limit, remaining, reset, budget index or 0},
#         {'seed', key needs it (0/1), budget indexes that need it...} or {'dup'}.
_ADMIT = (
    _LUA_COMMON
    + """
local H, A, R = KEYS[1], KEYS[2], KEYS[3]
local budgets = #KEYS - 3
local id, now = ARGV[1], tonumber(ARGV[2])
local inflight, credits, tokens = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local alimit = tonumber(ARGV[6])
local quota, rpm, tpm, maxc = tonumber(ARGV[7]), tonumber(ARGV[11]), tonumber(ARGV[12]),
  tonumber(ARGV[13])
local caps = {{'5h', 18000, tonumber(ARGV[8])}, {'1d', 86400, tonumber(ARGV[9])},
  {'7d', 604800, tonumber(ARGV[10])}}
if redis.call('HEXISTS', R, id) == 1 then return {'dup'} end
local seed = {'seed', 0}
if H ~= '' and ARGV[14] == '1' and redis.call('HGET', H, 'seeded') ~= '1' then seed[2] = 1 end
for i = 1, budgets do
  if redis.call('HGET', KEYS[3 + i], 'seeded') ~= '1' then table.insert(seed, i) end
end
if seed[2] == 1 or #seed > 2 then return seed end
if inflight == 1 and num(A, 'inflight') >= alimit then
  return {'refused', 'concurrency', alimit, 0, now + 1, 0}
end
local checks = {}
local quota_left = ''
local need = math.max(credits, 1)
if H ~= '' then
  local res = num(H, 'res')
  if quota > 0 then
    quota_left = quota - num(H, 'total') - res
    table.insert(checks, {'quota', quota, quota_left, 0, need, 0})
  end
  for _, cap in ipairs(caps) do
    if cap[3] > 0 then
      local total, start = advance(H, 'w' .. cap[1], 'b:', 300, cap[2], now, cap[1] == '7d')
      local reset = math.max(start + cap[2] + 1, now + 1)
      table.insert(checks, {cap[1], cap[3], cap[3] - total - res, reset, need, 0})
    end
  end
  if rpm > 0 then
    local total, start = advance(H, 'r', 'r:', 1, 60, now, true)
    table.insert(checks, {'rpm', rpm, rpm - total, math.max(start + 61, now + 1), 1, 0})
  end
  if tpm > 0 then
    local total, start = advance(H, 't', 't:', 1, 60, now, true)
    table.insert(checks, {'tpm', tpm, tpm - total, math.max(start + 61, now + 1), 1, 0})
  end
  if maxc > 0 and inflight == 1 then
    table.insert(checks, {'concurrency', maxc, maxc - num(H, 'inflight'), now + 1, 1, 0})
  end
end
for i = 1, budgets do
  local B, limit = KEYS[3 + i], tonumber(ARGV[16 + i])
  local left = limit - num(B, 'total') - num(B, 'res')
  table.insert(checks, {'budget', limit, left, tonumber(ARGV[16 + budgets + i]), need, i})
end
-- A credit limit must fit the call's worst case (need); the others room for one call.
for _, check in ipairs(checks) do
  if check[3] < check[5] then
    return {'refused', check[1], check[2], check[3], check[4], check[6]}
  end
end
if H ~= '' then
  redis.call('HINCRBY', H, 'res', credits)
  redis.call('HINCRBY', H, 'inflight', inflight)
  add(H, 'r', 'r:', now, 1)
  add(H, 't', 't:', now, tokens)
  redis.call('EXPIRE', H, tonumber(ARGV[16]))
end
for i = 1, budgets do
  redis.call('HINCRBY', KEYS[3 + i], 'res', credits)
  redis.call('EXPIRE', KEYS[3 + i], tonumber(ARGV[16]))
end
if inflight == 1 then redis.call('HINCRBY', A, 'inflight', 1) end
redis.call('EXPIRE', A, tonumber(ARGV[16]))
redis.call('HSET', R, id, ARGV[15])
local answer = {'ok', quota_left}
for _, check in ipairs(checks) do
  if check[1] ~= 'quota' then
    for i = 1, 4 do table.insert(answer, check[i]) end
  end
end
return answer
"""
)

# KEYS: owner's reservations hash. ARGV: id, credits charged, tokens used, now.
# The record says which key and account hashes to give back to.
_FREE = (
    _LUA_COMMON
    + """
local R, id = KEYS[1], ARGV[1]
local record = redis.call('HGET', R, id)
if not record then return 0 end
redis.call('HDEL', R, id)
local H, A, credits, tokens, second, inflight, budgets = string.match(record,
  '^([^|]*)|([^|]*)|(-?%d+)|(-?%d+)|(%d+)|(%d)|?([^|]*)$')
credits, tokens, second, inflight = tonumber(credits), tonumber(tokens), tonumber(second),
  tonumber(inflight)
if inflight == 1 then redis.call('HINCRBY', A, 'inflight', -1) end
-- The budgets it counted against (a forgotten one is loaded afresh, with this call).
for B in string.gmatch(budgets, '[^,]+') do
  if redis.call('EXISTS', B) == 1 then
    redis.call('HINCRBY', B, 'res', 0 - credits)
    if tonumber(ARGV[2]) > 0 then redis.call('HINCRBY', B, 'total', tonumber(ARGV[2])) end
  end
end
if H ~= '' and redis.call('EXISTS', H) == 1 then
  redis.call('HINCRBY', H, 'res', 0 - credits)  -- never -0: Redis refuses it
  redis.call('HINCRBY', H, 'inflight', 0 - inflight)
  add(H, 't', 't:', second, tonumber(ARGV[3]) - tokens)
  local charged, now = tonumber(ARGV[2]), tonumber(ARGV[4])
  if charged > 0 and redis.call('HGET', H, 'seeded') == '1' then
    local bucket = now - now % 300
    redis.call('HINCRBY', H, 'total', charged)
    redis.call('HINCRBY', H, 'b:' .. bucket, charged)
    for _, name in ipairs({'w5h', 'w1d', 'w7d'}) do
      if bucket >= num(H, name .. ':from') then
        redis.call('HINCRBY', H, name .. ':sum', charged)
      end
    end
  end
end
return 1
"""
)

# KEYS: key hash. ARGV: now, total, ttl, then bucket, credits pairs.
_SEED = """
local H = KEYS[1]
if redis.call('HGET', H, 'seeded') == '1' then return 0 end
local now = tonumber(ARGV[1])
redis.call('HSET', H, 'seeded', 1, 'total', ARGV[2])
for i = 4, #ARGV, 2 do redis.call('HINCRBY', H, 'b:' .. ARGV[i], tonumber(ARGV[i + 1])) end
for _, w in ipairs({{'w5h', 18000}, {'w1d', 86400}, {'w7d', 604800}}) do
  local first = math.ceil((now - w[2]) / 300) * 300
  local total = 0
  for i = 4, #ARGV, 2 do
    if tonumber(ARGV[i]) >= first then total = total + tonumber(ARGV[i + 1]) end
  end
  redis.call('HSET', H, w[1] .. ':sum', total, w[1] .. ':from', first)
end
redis.call('EXPIRE', H, tonumber(ARGV[3]))
return 1
"""

# KEYS: budget hash. ARGV: its spend in its period, ttl.
_SEED_BUDGET = """
if redis.call('HGET', KEYS[1], 'seeded') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'seeded', 1, 'total', ARGV[1], 'res', 0)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

COUNTER_TTL_SECONDS = 8 * 86400  # longer than the longest window: an idle key is seeded again


class RedisCounters:
    """The counters in Redis, shared by every web process. ``owner`` names this process: its
    reservations are written under it, for ``reclaim_dead`` to give back if it dies."""

    def __init__(self, client, prefix: str, owner: str):
        self.redis = client
        self.prefix = prefix
        self.owner = owner
        self._admit = client.register_script(_ADMIT)
        self._free = client.register_script(_FREE)
        self._seed = client.register_script(_SEED)
        self._seed_budget = client.register_script(_SEED_BUDGET)

    def _key(self, limits: KeyLimits | None) -> str:
        if limits is None:
            return ""
        return f"{self.prefix}:meter:key:{limits.key_id}:{limits.version}"

    def _account(self, account_id: int) -> str:
        return f"{self.prefix}:meter:account:{account_id}"

    def _owner(self, owner: str) -> str:
        return f"{self.prefix}:meter:owner:{owner}"

    def _budget(self, budget: BudgetLimit) -> str:
        return f"{self.prefix}:meter:budget:{budget.counter}"

    async def seed_budget(self, budget: BudgetLimit, total: int) -> None:
        await self._seed_budget(keys=[self._budget(budget)], args=[total, COUNTER_TTL_SECONDS])

    async def forget_budget(self, budget: BudgetLimit) -> None:
        await self.redis.delete(self._budget(budget))

    def owner_of(self, reservation: Reservation) -> str:
        return self.owner if reservation.in_flight else "tasks"

    async def seed(self, limits: KeyLimits, seed: Seed, now: float) -> None:
        args = [int(now), seed.total, COUNTER_TTL_SECONDS]
        for bucket, credits in seed.buckets.items():
            args += [bucket, credits]
        await self._seed(keys=[self._key(limits)], args=args)

    async def forget_key(self, limits: KeyLimits) -> None:
        """Drop the key's spend (its reservations in flight too: they free nothing once it is
        gone): it is seeded from the database again."""
        await self.redis.delete(self._key(limits))

    async def admit(self, reservation: Reservation, account_limit: int, now: float) -> LimitState:
        limits = reservation.limits or KeyLimits(key_id=0)
        key = self._key(reservation.limits)
        account = self._account(reservation.account_id)
        second = int(now)
        budgets = [self._budget(budget) for budget in reservation.budgets]
        record = "|".join(
            str(v)
            for v in (key, account, reservation.credits, reservation.tokens, second,
                      int(reservation.in_flight), ",".join(budgets))
        )  # fmt: skip
        answer = await self._admit(
            keys=[key, account, self._owner(self.owner_of(reservation)), *budgets],
            args=[
                reservation.id, second, int(reservation.in_flight), reservation.credits,
                reservation.tokens, account_limit, limits.quota or 0, limits.rate_limit_5h or 0,
                limits.rate_limit_1d or 0, limits.rate_limit_7d or 0, limits.rpm or 0,
                limits.tpm or 0, limits.max_concurrent or 0, int(limits.counts_spend), record,
                COUNTER_TTL_SECONDS, *(b.limit for b in reservation.budgets),
                *(b.reset for b in reservation.budgets),
            ],
        )  # fmt: skip
        verdict = _text(answer[0])
        if verdict == "seed":
            wanted = tuple(reservation.budgets[int(i) - 1] for i in answer[2:])
            raise SeedNeeded(int(answer[1]) == 1, wanted)
        if verdict == "dup":
            return LimitState()
        if verdict == "refused":
            name, limit, remaining, reset, index = _text(answer[1]), *map(int, answer[2:6])
            label = reservation.budgets[index - 1].label if index else ""
            raise refusal(Headroom(name, limit, remaining, reset, label), second)
        quota_left = int(answer[1]) if _text(answer[1]) else None
        labels = iter(budget.label for budget in reservation.budgets)
        checks = []
        for i in range(2, len(answer), 4):
            name = _text(answer[i])
            label = next(labels) if name == "budget" else ""
            checks.append(Headroom(name, int(answer[i + 1]), int(answer[i + 2]),
                                   int(answer[i + 3]), label))  # fmt: skip
        return _limit_state(reservation, quota_left, checks)

    async def settle(self, reservation_id: str, credits: int, tokens: int, now: float,
                     owner: str | None = None) -> None:  # fmt: skip
        await self._free(
            keys=[self._owner(owner or self.owner)],
            args=[reservation_id, credits, tokens, int(now)],
        )

    async def release(self, reservation_id: str, owner: str | None = None) -> None:
        await self._free(keys=[self._owner(owner or self.owner)], args=[reservation_id, 0, 0, 0])

    async def open_reservations(self, owner: str) -> dict[str, int]:
        """The owner's reservations, and when each was made."""
        records = await self.redis.hgetall(self._owner(owner))
        return {_text(r): int(_text(v).split("|")[4]) for r, v in records.items()}

    async def reclaim_dead(self) -> int:
        """Give back what processes that stopped saying they are alive had reserved."""
        reclaimed = 0
        pattern = f"{self.prefix}:meter:owner:*"
        async for name in self.redis.scan_iter(match=pattern, count=100):
            owner = _text(name).rsplit(":", 1)[1]
            if owner == "tasks" or await self.redis.exists(alive_key(self.prefix, owner)):
                continue
            for reservation_id in await self.open_reservations(owner):
                reclaimed += await self._free(
                    keys=[self._owner(owner)], args=[reservation_id, 0, 0, 0]
                )
        return reclaimed


def alive_key(prefix: str, owner: str) -> str:
    return f"{prefix}:meter:alive:{owner}"


def keep_alive(url: str, prefix: str, owner: str, ttl: float) -> threading.Thread:
    """Say, every quarter of ``ttl``, that ``owner`` is alive for ``ttl`` more, from a thread of
    its own: an event loop stalled by load (or a database call queued behind requests) must not
    make a live process look dead, or its reservations would be given back while its calls
    run."""
    import redis

    def beat():
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        while True:
            try:
                client.set(alive_key(prefix, owner), 1, px=int(ttl * 1000))
            except Exception:
                logger.warning("could not say this process is alive", exc_info=True)
            time.sleep(ttl / 4)

    thread = threading.Thread(target=beat, name="meter-heartbeat", daemon=True)
    thread.start()
    return thread


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
