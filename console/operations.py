"""The operators' overview (staff only; a 404 for everyone else): the headline numbers of the
Grafana dashboard (docs/grafana/bytespike.json), for an operator without Grafana at hand.

Traffic, latency, money and queues come from the metrics this machine's web processes and
workers record (core/metrics.py): the page keeps the last reading in the viewer's session and
shows what changed since, refreshed every few seconds while it is open, so its figures are
rates over the last seconds like a dashboard's (the first reading counts since the processes
started). Open holds, unfinished tasks and breakers are read where they are true: the database
and Redis. With web processes on several machines the metrics are this machine's: Grafana sums
the fleet.
"""

import time
from dataclasses import dataclass

from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.decorators import staff_view
from billing.selectors import holds_open_by_kind
from catalogue.models import Channel
from core import metrics
from core.money import MICROS_PER_CREDIT, format_credits
from generation.channel_ops import channels_health
from generation.selectors import tasks_unfinished

PAGE = "console/operations.html"
POLL_SECONDS = 5
SESSION_KEY = "operations_reading"
# A reading older than this is no base for a rate: count since the processes started again.
STALE_READING_SECONDS = 600


@dataclass(frozen=True)
class Figure:
    label: str
    value: str
    note: str = ""
    key: str = ""  # data-figure, for tests and scripts
    alarm: bool = False


@require_GET
@staff_view
def operations(request):
    now = time.time()
    reading = metrics.snapshot()
    previous = request.session.get(SESSION_KEY)
    request.session[SESSION_KEY] = {"at": now, **reading}
    seconds = now - previous["at"] if previous else 0.0
    if previous and 0.5 <= seconds <= STALE_READING_SECONDS:
        happened, window = metrics.difference(reading, previous), seconds
    else:
        happened, window = reading, None
    context = {
        "figures": figures(happened, window),
        "window": window,
        "holds": holds_open_by_kind(),
        "tasks": tasks_unfinished(),
        "breakers": _not_closed(),
        "poll_seconds": POLL_SECONDS,
    }
    return render(request, f"{PAGE}#headline" if request.htmx else PAGE, context)


def _not_closed() -> list:
    """Deployments whose breaker is open or half-open, with their channel."""
    return [
        (row.channel, item)
        for row in channels_health(Channel.objects.order_by("name"))
        for item in row.deployments
        if item.breaker.state != "closed"
    ]


def figures(happened: dict, window: float | None) -> list[Figure]:
    """The headline numbers of what ``happened`` (a snapshot's difference) over ``window``
    seconds (None: since the processes started)."""
    counters, histograms = happened["counters"], happened["histograms"]
    statuses = counters["requests"]
    calls = sum(statuses.values())
    failed = sum(n for status, n in statuses.items() if status.startswith("5"))
    refused = sum(n for status, n in statuses.items() if status in ("402", "429"))
    credits = sum(counters["credits"].values())
    tokens = sum(counters["tokens"].values())
    cache = counters["key_cache"]
    lookups = cache.get("hit", 0) + cache.get("miss", 0)
    callbacks = counters["callbacks"]
    finished = counters["tasks_finished"]
    batches = histograms["batch_calls"]

    def per_second(count: float) -> str:
        return f"{count / window:,.1f}/s" if window else f"{count:,.0f}"

    def ms(name: str, q: float) -> str:
        value = metrics.quantile(q, histograms[name])
        return "—" if value is None else f"{value * 1000:,.1f} ms"

    def seconds(name: str, q: float) -> str:
        value = metrics.quantile(q, histograms[name])
        return "—" if value is None else f"{value:,.1f} s"

    def share(part: float, whole: float) -> str:
        return f"{part / whole:.1%}" if whole else "—"

    per_batch = metrics.quantile(0.5, batches, interpolate=False) or 0
    done = ", ".join(f"{n:,.0f} {status}" for status, n in sorted(finished.items()))
    return [
        Figure("Requests", per_second(calls), f"{calls:,.0f} answered", key="requests"),
        Figure(
            "Server errors",
            share(failed, calls),
            f"{failed:,.0f} answered 5xx",
            key="errors",
            alarm=bool(calls) and failed / calls > 0.05,
        ),
        Figure("Refused", per_second(refused), "402 and 429: wallets and limits", key="refused"),
        Figure(
            "Gateway added",
            ms("gateway_added", 0.5),
            f"p95 {ms('gateway_added', 0.95)}",
            key="gateway-added",
        ),
        Figure("Upstream p95", ms("upstream", 0.95), f"p50 {ms('upstream', 0.5)}", key="upstream"),
        Figure("Stream first byte p95", ms("first_byte", 0.95), key="first-byte"),
        Figure(
            "Credits charged",
            format_credits(round(credits * MICROS_PER_CREDIT)),
            f"{tokens:,.0f} tokens",
            key="credits",
        ),
        Figure(
            "Settlement lag p95",
            ms("settlement_lag", 0.95),
            f"{batches[-1][1] if batches else 0:,.0f} batches, half of them of at most "
            f"{per_batch:,.0f} call{'' if per_batch == 1 else 's'}",
            key="settlement-lag",
        ),
        Figure(
            "Task queue wait p95",
            seconds("queue_wait", 0.95),
            f"finished: {done}" if done else "none finished",
            key="queue-wait",
        ),
        Figure(
            "Callbacks",
            f"{callbacks.get('delivered', 0):,.0f} delivered",
            f"{callbacks.get('retrying', 0):,.0f} retrying, "
            f"{callbacks.get('failed', 0):,.0f} failed",
            key="callbacks",
            alarm=bool(callbacks.get("failed")),
        ),
        Figure(
            "Key cache hits",
            share(cache.get("hit", 0), lookups),
            f"{lookups:,.0f} lookups",
            key="key-cache",
        ),
    ]
