"""Prometheus metrics: what every layer records, and the text a scrape of ``/metrics`` reads
(console/metrics.py; the list, and why each label set is bounded, in docs/operations.md).

Every label takes its values from a bounded set: route names, protocols, HTTP statuses, outcomes,
and slugs of the catalogue's models, routing groups and channels (set once a request's model is
resolved, never the name a caller sent). No key, account, prompt or secret is ever a label.

With ``BYTESPIKE_METRICS_DIR`` (the default), the web processes and Celery workers of a machine
write their metrics to files in that folder (prometheus_client's multiprocess mode; the settings
point it there before prometheus_client is imported), and a scrape of any web process reads them
all. Without it (tests in process) a process reports its own.
"""

import functools
import time
from collections.abc import Awaitable
from contextvars import ContextVar

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from core import tracing

# --- Data-plane requests and upstreams ---------------------------------------------------------

REQUESTS = Counter(
    "bytespike_requests",
    "Data-plane requests answered, by route, protocol, model, HTTP status and the upstream "
    "channel of the last attempt (empty: none was made).",
    ["route", "protocol", "model", "status", "upstream"],
)
GATEWAY_ADDED = Histogram(
    "bytespike_gateway_added_seconds",
    "What the gateway added to a data-plane request: its time until the answer starts, less "
    "the upstream attempts' time.",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
UPSTREAM_LATENCY = Histogram(
    "bytespike_upstream_latency_seconds",
    "Upstream attempts, by channel and outcome: until the whole answer, or a stream's first event.",
    ["upstream", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
STREAM_FIRST_BYTE = Histogram(
    "bytespike_stream_first_byte_seconds",
    "Streamed text answers: from the request's arrival to its first event being sent.",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
KEY_CACHE_LOOKUPS = Counter(
    "bytespike_key_cache_lookups",
    "Inference keys looked up in a web process's key cache, by result (hit or miss).",
    ["result"],
)
KEY_CACHE_HIT = KEY_CACHE_LOOKUPS.labels("hit")
KEY_CACHE_MISS = KEY_CACHE_LOOKUPS.labels("miss")

# --- Billing -----------------------------------------------------------------------------------

TOKENS = Counter(
    "bytespike_tokens",
    "Tokens of billed calls, by model, routing group and kind (input, output, cache_read, "
    "cache_write, reasoning), counted once their usage is committed.",
    ["model", "group", "kind"],
)
CREDITS = Counter(
    "bytespike_credits",
    "Credits charged for billed calls and tasks, by model and routing group.",
    ["model", "group"],
)
SETTLEMENT_BATCH_CALLS = Histogram(
    "bytespike_settlement_batch_calls",
    "Calls written per settlement batch, by outcome (committed, failed).",
    ["outcome"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
SETTLEMENT_BATCH_COMMITTED = SETTLEMENT_BATCH_CALLS.labels("committed")
SETTLEMENT_BATCH_FAILED = SETTLEMENT_BATCH_CALLS.labels("failed")
SETTLEMENT_LAG = Histogram(
    "bytespike_settlement_lag_seconds",
    "From a call's settlement being queued to its batch's commit.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# --- Tasks and callbacks -------------------------------------------------------------------------

TASK_QUEUE_WAIT = Histogram(
    "bytespike_task_queue_wait_seconds",
    "From a task's submission to a worker starting it, by model.",
    ["model"],
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
TASKS_FINISHED = Counter(
    "bytespike_tasks_finished",
    "Tasks that reached a terminal status (completed, failed, cancelled), by model.",
    ["model", "status"],
)
CALLBACK_DELIVERIES = Counter(
    "bytespike_callback_deliveries",
    "Task callback attempts, by outcome: delivered, retrying (another attempt is scheduled) "
    "or failed (no more attempts).",
    ["outcome"],
)


# --- Recording on the hot path -------------------------------------------------------------------


@functools.cache
def labelled(metric, *values: str):
    """``metric.labels(*values)``, remembered: label sets are bounded, and a dictionary lookup
    costs a fraction of the checks prometheus_client makes on every ``labels`` call."""
    return metric.labels(*values)


# The request being answered, so that routing and failover, which do not see it, add to it.
_current: ContextVar["DataPlaneCall | None"] = ContextVar("bytespike_metrics_call", default=None)


class DataPlaneCall:
    """A data-plane request, as a context: on leaving it, the request is counted by route,
    protocol, model, status and upstream, and the latency the gateway added is observed. The
    view's wrapper sets ``status``; an exception counts as the 500 Django makes of it; a request
    cancelled because its client left is not counted."""

    def __init__(self, route: str, protocol: str):
        self.route, self.protocol = route, protocol
        self.model = self.upstream = ""
        self.upstream_seconds = 0.0
        self.status = 0

    def __enter__(self) -> "DataPlaneCall":
        self.started = time.perf_counter()
        self._token = _current.set(self)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        _current.reset(self._token)
        if kind is not None and issubclass(kind, Exception):
            self.status = 500
        if self.status:
            labels = (self.route, self.protocol, self.model, str(self.status), self.upstream)
            labelled(REQUESTS, *labels).inc()
            added = time.perf_counter() - self.started - self.upstream_seconds
            labelled(GATEWAY_ADDED, self.route).observe(max(added, 0.0))


def model_resolved(slug: str) -> None:
    """The request's model, once the catalogue has named it."""
    call = _current.get()
    if call is not None:
        call.model = slug


async def upstream_attempt[T](upstream: str, attempt: Awaitable[T]) -> T:
    """Await one attempt on the ``upstream`` channel, timed by outcome. An attempt cancelled
    (its client left) says nothing about the upstream and is not counted."""
    started = time.perf_counter()
    with tracing.span("upstream call", **{"bytespike.upstream": upstream}):
        try:
            answer = await attempt
        except Exception:
            _attempted(upstream, started, "error")
            raise
    _attempted(upstream, started, "ok")
    return answer


def _attempted(upstream: str, started: float, outcome: str) -> None:
    seconds = time.perf_counter() - started
    labelled(UPSTREAM_LATENCY, upstream, outcome).observe(seconds)
    call = _current.get()
    if call is not None:
        call.upstream = upstream
        call.upstream_seconds += seconds


def stream_started(model: str) -> None:
    """A streamed answer's first event is in hand and goes out now: its time to first byte."""
    call = _current.get()
    if call is not None:
        labelled(STREAM_FIRST_BYTE, model).observe(time.perf_counter() - call.started)


# --- The scrape --------------------------------------------------------------------------------


class _Read:
    """Metric families already read (a collector's shape, for a registry)."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def exposition(read_at_scrape: list[Metric], accept: str) -> tuple[bytes, str]:
    """The scrape's body and content type, in the format its Accept header asks for: the
    metrics above (every process's on this machine, in multiprocess mode) and
    ``read_at_scrape``, the families whose truth is in the database or Redis."""
    registry = CollectorRegistry()
    registry.register(_Read(_families()))
    registry.register(_Read(read_at_scrape))
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type


# --- Headline numbers (the staff operations page) ------------------------------------------------


def _families() -> list[Metric]:
    """What a scrape would read of the processes' own metrics (every process's on this machine,
    in multiprocess mode)."""
    if settings.BYTESPIKE_METRICS_DIR:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=settings.BYTESPIKE_METRICS_DIR)
        return list(registry.collect())
    return list(REGISTRY.collect())


# The counters and histograms the operations page shows, and how their series are summed:
# a counter's samples by the label named (None: all together), a histogram's buckets over
# every series that matches ``only``.
_COUNTED = {
    "requests": ("bytespike_requests_total", "status"),
    "tokens": ("bytespike_tokens_total", None),
    "credits": ("bytespike_credits_total", None),
    "tasks_finished": ("bytespike_tasks_finished_total", "status"),
    "callbacks": ("bytespike_callback_deliveries_total", "outcome"),
    "key_cache": ("bytespike_key_cache_lookups_total", "result"),
}
_TIMED = {
    "gateway_added": ("bytespike_gateway_added_seconds", {}),
    "upstream": ("bytespike_upstream_latency_seconds", {"outcome": "ok"}),
    "first_byte": ("bytespike_stream_first_byte_seconds", {}),
    "settlement_lag": ("bytespike_settlement_lag_seconds", {}),
    "batch_calls": ("bytespike_settlement_batch_calls", {"outcome": "committed"}),
    "queue_wait": ("bytespike_task_queue_wait_seconds", {}),
}


def snapshot() -> dict:
    """The counters and histogram buckets the operations page reads, summed over their series:
    ``{"counters": {name: {label value: total}}, "histograms": {name: [[le, count], ...]}}``
    (cumulative counts, as Prometheus keeps them). Plain data: it is kept in the session to take
    the next one's difference from."""
    samples: dict[str, list] = {}
    for family in _families():
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    counters = {}
    for name, (sample_name, by) in _COUNTED.items():
        sums: dict[str, float] = {}
        for sample in samples.get(sample_name, ()):
            key = sample.labels.get(by, "") if by else ""
            sums[key] = sums.get(key, 0.0) + sample.value
        counters[name] = sums
    histograms = {}
    for name, (family_name, only) in _TIMED.items():
        buckets: dict[float, float] = {}
        for sample in samples.get(f"{family_name}_bucket", ()):
            if all(sample.labels.get(k) == v for k, v in only.items()):
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
        histograms[name] = sorted([le, count] for le, count in buckets.items())
    return {"counters": counters, "histograms": histograms}


def quantile(q: float, buckets: list[list[float]], *, interpolate: bool = True) -> float | None:
    """The ``q`` quantile of cumulative histogram buckets ``[[le, count], ...]``, interpolated
    inside its bucket as Prometheus's histogram_quantile does (or, ``interpolate`` False, the
    bucket's upper bound: for counts, such as calls per batch, where a fraction means nothing);
    None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower  # beyond the last finite bucket: its bound is all that is known
            if not interpolate:
                return le
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = le, count
    return lower


def difference(later: dict, earlier: dict | None) -> dict:
    """What happened between two snapshots (the earlier may be of processes since restarted:
    a counter that went down counts from zero)."""
    if earlier is None:
        return later

    def minus(now: float, then: float) -> float:
        return now - then if now >= then else now

    counters = {
        name: {key: minus(value, earlier["counters"].get(name, {}).get(key, 0.0))
               for key, value in sums.items()}
        for name, sums in later["counters"].items()
    }  # fmt: skip
    histograms = {}
    for name, buckets in later["histograms"].items():
        before = {le: count for le, count in earlier["histograms"].get(name, [])}
        histograms[name] = [[le, minus(count, before.get(le, 0.0))] for le, count in buckets]
    return {"counters": counters, "histograms": histograms}
