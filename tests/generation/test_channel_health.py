"""Channel health: every upstream attempt is counted per deployment and minute (in memory, then
added into shared rows by each process); staff see each channel's breakers, error rate and
latency on a console page and in the admin, test a channel, disable and enable it; those
changes and breaker trips are in the audit log, outside every account's."""

import json
import math
import time

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from accounts.models import AuditEvent
from catalogue.models import Channel, Deployment
from generation import health
from generation.breakers import breakers
from generation.health import Recorder, deployment_stats
from generation.models import DeploymentMinute
from generation.routing import forget
from tests.factories import funded_keys

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def demo(world):
    keys = funded_keys(world.account, world.owner, credits=20)
    forget()
    return keys


def deployment(model: str, channel: str) -> Deployment:
    return Deployment.objects.get(model__slug=model, channel__slug=channel)


def chat(client, key, model="gpt-4.1"):
    return client.post(
        "/v1/chat/completions", json.dumps({"model": model, "messages": MESSAGES}),
        content_type="application/json", headers={"x-api-key": key},
    )  # fmt: skip


# --- Statistics ----------------------------------------------------------------------------------


def test_two_processes_add_into_the_same_minute(demo):
    primary = deployment("gpt-4.1", "openai").pk
    now = time.time()
    first, second = Recorder(), Recorder()
    first.clock = second.clock = lambda: now
    for latency in (3, 15, 15, 150):
        first.record(primary, ok=True, latency_ms=latency)
    first.record(primary, ok=False, latency_ms=30_000)
    for _ in range(5):
        second.record(primary, ok=True, latency_ms=15)
    first.flush()
    second.flush()
    first.flush()  # nothing new: adds nothing

    row = DeploymentMinute.objects.get(deployment_id=primary)
    assert (row.calls, row.failures) == (10, 1)
    assert row.latency_le_5ms == 1 and row.latency_le_20ms == 7 and row.latency_le_30000ms == 1
    stats = deployment_stats([primary])[primary]
    assert stats.calls == 10 and stats.error_rate == pytest.approx(0.1)
    # Bucket resolution: 8 of 10 calls took at most 20 ms, the 10th up to 30 s.
    assert (stats.p50, stats.p95, stats.p99) == (20, 30_000, 30_000)
    assert stats.last_failure_at is not None


def test_percentiles_come_from_the_buckets():
    stats = health.Stats(calls=100, latency_counts=(0,) * 4 + (90, 5, 4) + (0,) * 6 + (1,))
    assert stats.p50 == 100  # 90 calls in (50, 100] ms
    assert stats.p95 == 200
    assert stats.p99 == 500
    assert stats.percentile(1.0) == math.inf  # the slowest took more than 60 s
    assert health.Stats().p95 is None and health.Stats().error_rate is None


def test_minutes_older_than_the_window_are_left_out_and_pruned_after_a_week(demo):
    primary = deployment("gpt-4.1", "openai").pk
    recorder = Recorder()
    now = time.time()
    for minutes_ago in (0, 20, 8 * 24 * 60):
        recorder.clock = lambda minutes_ago=minutes_ago: now - minutes_ago * 60
        recorder.record(primary, ok=minutes_ago != 20, latency_ms=100)
    recorder.flush()
    stats = deployment_stats([primary])[primary]
    assert stats.calls == 1 and stats.failures == 0
    assert stats.last_failure_at is not None  # 20 minutes ago: still the last failure
    assert health.prune() == 1
    assert DeploymentMinute.objects.count() == 2


def test_counts_that_cannot_be_written_are_kept_for_the_next_flush(demo, monkeypatch):
    primary = deployment("gpt-4.1", "openai").pk
    recorder = Recorder()
    recorder.record(primary, ok=True, latency_ms=10)

    def down(minutes):
        from django.db import OperationalError

        raise OperationalError("the database is restarting")

    with monkeypatch.context() as patch:
        patch.setattr(health, "_add_minutes", down)
        recorder.flush()
    recorder.record(primary, ok=True, latency_ms=10)
    recorder.flush()
    assert DeploymentMinute.objects.get(deployment_id=primary).calls == 2


def test_every_attempt_of_a_call_is_counted(client, demo):
    faults("openai", sandbox_failure_rate=1)
    assert chat(client, demo["default"]).status_code == 200  # failed over to azure
    health.recorder.flush()
    primary, backup = deployment_stats(
        [deployment("gpt-4.1", "openai").pk, deployment("gpt-4.1", "azure").pk]
    ).values()
    assert (primary.calls, primary.failures) == (1, 1)
    assert (backup.calls, backup.failures) == (1, 0)


def faults(slug, **fields):
    Channel.objects.filter(slug=slug).update(**fields)
    forget()


# --- Audit ---------------------------------------------------------------------------------------


def test_a_trip_is_audited_once_outside_every_account(client, world, demo, settings):
    settings.BYTESPIKE_BREAKER_FAILURES = 3
    primary = deployment("gpt-4.1", "openai")

    async def fail(times):
        for _ in range(times):
            await breakers.failed(primary.pk)

    async_to_sync(fail)(5)  # the third trips it; the next two find it open
    channel_events = AuditEvent.objects.filter(action__startswith="channel.")
    assert not channel_events.exists()  # nothing written inside the event loop
    health.recorder.flush()
    event = channel_events.get()
    assert (event.action, event.target, event.account) == ("channel.tripped", "openai", None)
    assert event.details == {
        "deployment": primary.pk, "model": "gpt-4.1", "reason": "3 consecutive failures"
    }  # fmt: skip
    health.recorder.flush()
    assert channel_events.count() == 1
    # Account pages never show it.
    client.force_login(world.owner)
    assert "channel.tripped" not in client.get(reverse("accounts:audit")).text
