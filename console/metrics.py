"""GET /metrics: the Prometheus scrape (docs/operations.md#metrics).

Served only to ``Authorization: Bearer $BYTESPIKE_METRICS_TOKEN``: a 404 while that setting is
empty (never open by default), a 401 without the token. Besides what the processes recorded
(core/metrics.py), it reads what is true in the database and Redis at the moment of the scrape,
with a few cheap queries: holds and leases open, tasks waiting or running, and the breakers.
"""

import hmac

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from prometheus_client.core import GaugeMetricFamily

from billing.selectors import holds_open_by_kind
from catalogue.models import Deployment
from core.db import run_db
from core.metrics import exposition
from generation.breakers import breakers
from generation.selectors import tasks_unfinished

BREAKER_STATES = ("closed", "open", "half_open")


@never_cache
async def metrics(request):
    token = settings.BYTESPIKE_METRICS_TOKEN
    if not token:
        raise Http404
    if not _bearer_is(request, token):
        response = HttpResponse("A metrics token is needed.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    families, deployments = await run_db(_from_database)
    families.append(await _breaker_states(deployments))
    # Reading every process's files is file work: off the event loop.
    body, content_type = await sync_to_async(exposition, thread_sensitive=False)(
        families, request.headers.get("Accept", "")
    )
    return HttpResponse(body, content_type=content_type)


def _bearer_is(request, token: str) -> bool:
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode())


def _from_database() -> tuple[list, list[tuple[int, str, str]]]:
    """Open holds by kind, unfinished tasks by status, and the deployments (id, model slug,
    channel slug) whose breakers to read."""
    holds = GaugeMetricFamily(
        "bytespike_holds_open", "Holds open now, by kind (request, task, lease).", labels=["kind"]
    )
    held = GaugeMetricFamily(
        "bytespike_holds_open_credits", "Credits held by the holds open now, by kind.",
        labels=["kind"],
    )  # fmt: skip
    for kind, (count, amount) in holds_open_by_kind().items():
        holds.add_metric([kind], count)
        held.add_metric([kind], amount / 1_000_000)

    tasks = GaugeMetricFamily(
        "bytespike_tasks", "Tasks waiting for a worker (pending) or running now.", labels=["status"]
    )
    oldest = GaugeMetricFamily(
        "bytespike_task_oldest_seconds",
        "Age of the oldest task in each unfinished status (0: none).",
        labels=["status"],
    )
    for status, (count, age) in tasks_unfinished().items():
        tasks.add_metric([status], count)
        oldest.add_metric([status], age)

    deployments = list(Deployment.objects.values_list("id", "model__slug", "channel__slug"))
    return [holds, held, tasks, oldest], deployments


async def _breaker_states(deployments: list[tuple[int, str, str]]) -> GaugeMetricFamily:
    """Each deployment's breaker, one series per state (1: the state it is in), from Redis when
    it is configured (else this process's memory)."""
    family = GaugeMetricFamily(
        "bytespike_breaker_state",
        "Circuit breaker of each upstream deployment: 1 for the state it is in.",
        labels=["deployment", "model", "upstream", "state"],
    )
    states = await breakers.snapshot(deployment_id for deployment_id, _, _ in deployments)
    for deployment_id, model, upstream in deployments:
        current = states[deployment_id].state
        for state in BREAKER_STATES:
            family.add_metric([str(deployment_id), model, upstream, state], int(state == current))
    return family
