"""What each upstream deployment's attempts looked like lately: calls, failures and latency,
minute by minute, for the operators' channel page and the admin.

``first_answer`` reports every attempt with ``record``: a few additions in this process's memory,
under a lock, per (deployment, minute). A daemon thread of the process writes what it counted
every ``FLUSH_SECONDS`` (and the ASGI shutdown once more), adding it into ``DeploymentMinute``
rows with one upsert, so the rows are the sum over every web process and worker. A thread rather
than a task of the event loop: asgiref's ``async_to_sync`` (the workers' task submits, sync
views) ends its loop as soon as the call returns, cancelling whatever the call scheduled there.
Counts that could not be written (the database is down) are kept for the next flush.

Circuit-breaker trips (breakers.py calls ``tripped`` from inside the event loop) are written to
the audit log by the same flush, so no database work ever runs on the loop's thread.

Latency is the time to the upstream's answer (a stream's first event). Percentiles come from the
merged histogram (``LATENCY_BOUNDS_MS``): a percentile is the bound of the bucket it falls in.
"""

import logging
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import DatabaseError, connections, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from accounts.services import audit_record
from billing.sql import upsert_add
from catalogue.models import Deployment
from generation.models import LATENCY_BOUNDS_MS, LATENCY_COLUMNS, DeploymentMinute

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 5.0
KEEP_DAYS = 7
RECENT_MINUTES = 15
# Rows per INSERT: SQLite before 3.32 takes at most 999 parameters a statement.
ROWS_PER_STATEMENT = 50

# In-process tests turn this off (tests/conftest.py): the thread would write to the test
# database behind their backs. They call ``recorder.flush()`` instead.
flushing_enabled = True

_CALLS, _FAILURES, _FIRST_BUCKET = 0, 1, 2


@dataclass(frozen=True)
class Trip:
    deployment_id: int
    reason: str


class Recorder:
    """This process's counts not yet written (``recorder``: the one). Tests make more, to play
    several processes, and replace ``clock`` (epoch seconds)."""

    def __init__(self):
        self.clock = time.time
        # (deployment id, minute's start in epoch seconds) -> [calls, failures, *bucket counts]
        self._minutes: dict[tuple[int, int], list[int]] = {}
        self._trips: list[Trip] = []
        # Sync views and workers run event loops in threads of their own, all recording here.
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._database_down = False

    def record(self, deployment_id: int, ok: bool, latency_ms: int) -> None:
        """Count one attempt (``ok``: the upstream answered, if only to refuse the request)."""
        key = (deployment_id, int(self.clock() // 60) * 60)
        bucket = _FIRST_BUCKET + bisect_left(LATENCY_BOUNDS_MS, latency_ms)
        with self._lock:
            counts = self._minutes.get(key)
            if counts is None:
                counts = self._minutes[key] = [0] * (_FIRST_BUCKET + len(LATENCY_COLUMNS))
            counts[_CALLS] += 1
            counts[_FAILURES] += not ok
            counts[bucket] += 1
        if self._flusher is None:
            self._start_flusher()

    def tripped(self, deployment_id: int, reason: str) -> None:
        """A breaker of this process opened: an audit event, written by the next flush (the
        breakers' ``on_trip`` callback, called from inside the event loop)."""
        with self._lock:
            self._trips.append(Trip(deployment_id, reason))
        if self._flusher is None:
            self._start_flusher()

    def flush(self) -> None:
        """Write what was counted since the last flush (sync: database work). What cannot be
        written is kept for the next one."""
        with self._lock:
            minutes, self._minutes = self._minutes, {}
            trips, self._trips = self._trips, []
        try:
            if minutes:
                _add_minutes(minutes)
                minutes = {}
            if trips:
                _audit_trips(trips)
        except DatabaseError as error:
            self._keep(minutes, trips)
            if not self._database_down:  # once per outage, not every few seconds
                self._database_down = True
                logger.warning("attempt statistics not written (%r); kept for later", error)
            return
        if self._database_down:
            self._database_down = False
            logger.warning("attempt statistics written again")

    def forget(self) -> None:
        """Drop what was not written (tests: deployment ids repeat)."""
        with self._lock:
            self._minutes.clear()
            self._trips.clear()

    def _keep(self, minutes: dict[tuple[int, int], list[int]], trips: list[Trip]) -> None:
        with self._lock:
            self._trips[:0] = trips
            for key, counts in minutes.items():
                mine = self._minutes.setdefault(key, [0] * len(counts))
                for index, count in enumerate(counts):
                    mine[index] += count

    def _start_flusher(self) -> None:
        if not flushing_enabled:
            return
        with self._lock:
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_forever, name="attempt-stats", daemon=True
                )
                self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # a bug must not end the thread: the counts would pile up
                logger.exception("attempt statistics flush failed")
            finally:
                connections.close_all()


recorder = Recorder()
record = recorder.record


@transaction.atomic  # all or none: kept counts are added again
def _add_minutes(minutes: dict[tuple[int, int], list[int]]) -> None:
    # A deployment deleted since its attempts has no row to add to (its foreign key would fail).
    live = set(
        Deployment.objects.filter(pk__in={d for d, _ in minutes}).values_list("pk", flat=True)
    )
    rows = [
        {
            "deployment_id": deployment_id,
            "minute": datetime.fromtimestamp(minute, UTC),
            "calls": counts[_CALLS],
            "failures": counts[_FAILURES],
            **dict(zip(LATENCY_COLUMNS, counts[_FIRST_BUCKET:], strict=True)),
        }
        for (deployment_id, minute), counts in minutes.items()
        if deployment_id in live
    ]
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        upsert_add(
            DeploymentMinute,
            ("deployment_id", "minute"),
            rows[start : start + ROWS_PER_STATEMENT],
            amounts=("calls", "failures", *LATENCY_COLUMNS),
        )


@transaction.atomic  # all or none: kept trips are written again
def _audit_trips(trips: list[Trip]) -> None:
    deployments = Deployment.objects.select_related("channel", "model").in_bulk(
        {trip.deployment_id for trip in trips}
    )
    for trip in trips:
        deployment = deployments.get(trip.deployment_id)
        if deployment is None:
            continue
        audit_record(
            account=None,
            actor=None,
            actor_label="circuit breaker",
            action="channel.tripped",
            target=deployment.channel.slug,
            deployment=deployment.pk,
            model=deployment.model.slug,
            reason=trip.reason,
        )


def prune(keep_days: int = KEEP_DAYS) -> int:
    """Delete minutes older than ``keep_days``; how many."""
    cutoff = timezone.now() - timedelta(days=keep_days)
    deleted, _ = DeploymentMinute.objects.filter(minute__lt=cutoff).delete()
    return deleted


# --- Reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Attempts over some minutes: a deployment's, or a channel's (its deployments' summed)."""

    calls: int = 0
    failures: int = 0
    latency_counts: tuple[int, ...] = (0,) * len(LATENCY_COLUMNS)
    last_failure_at: datetime | None = None  # the start of the minute (of the kept days)

    def __add__(self, other: "Stats") -> "Stats":
        last = [at for at in (self.last_failure_at, other.last_failure_at) if at is not None]
        return Stats(
            self.calls + other.calls,
            self.failures + other.failures,
            tuple(a + b for a, b in zip(self.latency_counts, other.latency_counts, strict=True)),
            max(last, default=None),
        )

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.calls if self.calls else None

    def percentile(self, share: float) -> float | None:
        """The upper bound (ms) of the bucket the ``share`` percentile falls in; ``math.inf`` in
        the last bucket; None without calls."""
        if not self.calls:
            return None
        rank = max(1, math.ceil(share * self.calls))
        seen = 0
        for bound, count in zip((*LATENCY_BOUNDS_MS, math.inf), self.latency_counts, strict=True):
            seen += count
            if seen >= rank:
                return bound
        return math.inf

    @property
    def p50(self) -> float | None:
        return self.percentile(0.50)

    @property
    def p95(self) -> float | None:
        return self.percentile(0.95)

    @property
    def p99(self) -> float | None:
        return self.percentile(0.99)

    # What pages show: a percentile as the bucket bound it is ("≤ 200 ms", "> 60 s").

    @property
    def error_rate_text(self) -> str:
        return "—" if self.error_rate is None else f"{self.error_rate:.1%}"

    @property
    def p50_text(self) -> str:
        return _latency_text(self.p50)

    @property
    def p95_text(self) -> str:
        return _latency_text(self.p95)

    @property
    def p99_text(self) -> str:
        return _latency_text(self.p99)


def _latency_text(bound: float | None) -> str:
    if bound is None:
        return "—"
    if bound == math.inf:
        return f"> {LATENCY_BOUNDS_MS[-1] // 1000} s"
    return f"≤ {bound} ms" if bound < 1000 else f"≤ {bound // 1000} s"


def deployment_stats(
    deployment_ids: Iterable[int], *, minutes: int = RECENT_MINUTES
) -> dict[int, Stats]:
    """Each deployment's attempts over the last ``minutes`` (the current one included), as every
    process wrote them (up to ``FLUSH_SECONDS`` behind), and its last failure of the kept days."""
    deployment_ids = list(deployment_ids)
    now = int(time.time() // 60) * 60
    since = datetime.fromtimestamp(now - (minutes - 1) * 60, UTC)
    mine = DeploymentMinute.objects.filter(deployment_id__in=deployment_ids)
    sums = (
        mine.filter(minute__gte=since)
        .values("deployment_id")
        .annotate(
            total_calls=Sum("calls"),
            total_failures=Sum("failures"),
            **{f"total_{column}": Sum(column) for column in LATENCY_COLUMNS},
        )
    )
    last_failures = dict(
        mine.filter(failures__gt=0)
        .values("deployment_id")
        .annotate(last=Max("minute"))
        .values_list("deployment_id", "last")
    )
    stats = {
        deployment_id: Stats(last_failure_at=last_failures.get(deployment_id))
        for deployment_id in deployment_ids
    }
    for row in sums:
        stats[row["deployment_id"]] = Stats(
            row["total_calls"],
            row["total_failures"],
            tuple(row[f"total_{column}"] for column in LATENCY_COLUMNS),
            last_failures.get(row["deployment_id"]),
        )
    return stats
