"""Channel health: every upstream attempt is counted per deployment and minute (in memory, then
added into shared rows by each process); staff see each channel's breakers, error rate and
latency on a console page and in the admin, test a channel, disable and enable it; those
changes and breaker trips are in the audit log, outside every account's."""

import json
import math
import time

import pytest
import respx
from asgiref.sync import async_to_sync
from django.db import OperationalError
from django.urls import reverse

from accounts.models import AuditEvent
from billing.models import UsageRecord
from catalogue.models import Channel, Deployment
from generation import health
from generation.breakers import breakers
from generation.health import Recorder, deployment_stats
from generation.models import DeploymentMinute
from generation.routing import forget
from tests.factories import AIModelFactory, ChannelFactory, UserFactory, funded_keys

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


def test_what_cannot_be_written_is_kept_for_the_next_flush(demo, monkeypatch):
    primary = deployment("gpt-4.1", "openai").pk
    recorder = Recorder()
    recorder.record(primary, ok=True, latency_ms=10)
    recorder.tripped(primary, "5 consecutive failures")

    def down(*args, **kwargs):
        raise OperationalError("the database is restarting")

    with monkeypatch.context() as patch:
        patch.setattr(health, "_add_minutes", down)
        recorder.flush()
    recorder.record(primary, ok=True, latency_ms=10)
    with monkeypatch.context() as patch:
        patch.setattr(health, "audit_record", down)
        recorder.flush()  # the minutes are written, the trip is not
    recorder.flush()
    assert DeploymentMinute.objects.get(deployment_id=primary).calls == 2
    assert AuditEvent.objects.filter(action="channel.tripped").count() == 1


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


# --- The console page ----------------------------------------------------------------------------

HTMX = {"HTTP_HX_REQUEST": "true"}
PAGE = "/operations/channels/"


@pytest.fixture
def staff(client, world):
    operator = UserFactory(email="ops@bytespike.test", is_staff=True)
    client.force_login(operator)
    client.operator = operator
    return client


def row_of(page: str, slug: str) -> str:
    start = page.index(f'id="channel-row-{slug}"')
    return page[start : page.index("</tr>", start)]


def test_the_page_is_a_404_for_everyone_but_staff(client, world, demo):
    assert client.get(PAGE).status_code == 302  # anonymous: the login page
    client.force_login(world.owner)
    assert client.get(PAGE).status_code == 404
    assert "Channels" not in client.get(reverse("console:dashboard")).text  # nor in the nav
    for action in ("test", "disable", "enable"):
        assert client.post(f"{PAGE}openai/{action}/").status_code == 404, action
    assert Channel.objects.get(slug="openai").is_enabled


def test_staff_see_every_channel_with_its_breakers_error_rate_and_latency(staff, demo, settings):
    settings.BYTESPIKE_BREAKER_FAILURES = 2
    primary, backup = deployment("gpt-4.1", "openai"), deployment("gpt-4.1", "azure")
    for latency in (80, 90, 95, 400):
        health.recorder.record(backup.pk, ok=True, latency_ms=latency)
    for _ in range(3):
        health.recorder.record(primary.pk, ok=False, latency_ms=1500)
    health.recorder.record(primary.pk, ok=True, latency_ms=700)
    health.recorder.flush()

    async def trip():
        for _ in range(2):
            await breakers.failed(primary.pk)

    async_to_sync(trip)()
    page = staff.get(PAGE).text
    assert 'href="/operations/channels/"' in page  # the nav shows staff the page
    for channel in Channel.objects.all():
        assert f'id="channel-row-{channel.slug}"' in page
    openai, azure = row_of(page, "openai"), row_of(page, "azure")
    assert "75.0%" in openai and "≤ 2 s" in openai
    assert f'data-deployment="{primary.pk}" data-breaker="open"' in openai and "until" in openai
    assert "0.0%" in azure and "≤ 100 ms" in azure and "≤ 500 ms" in azure
    assert f'data-deployment="{backup.pk}" data-breaker="closed"' in azure
    assert 'data-breaker="open"' not in row_of(page, "anthropic")


def test_a_test_call_on_a_sandbox_channel(staff, demo):
    url = f"{PAGE}openai/test/"
    answer = staff.post(url, **HTMX)
    assert answer.status_code == 200
    row = answer.text
    assert 'id="channel-row-openai"' in row and 'data-test="ok"' in row and ">200<" in row

    faults("openai", sandbox_failure_rate=1)
    page = staff.post(url).text  # without htmx: the whole page
    failed = row_of(page, "openai")
    assert 'data-test="failed"' in failed and "The upstream provider failed (503)." in failed
    assert not UsageRecord.objects.exists()
    assert not DeploymentMinute.objects.exists() and not health.recorder._minutes
    assert "https://" not in failed and "api.openai.com" not in page


def test_a_live_channel_test_shows_neither_its_url_nor_its_secret(staff, demo, settings):
    settings.BYTESPIKE_UPSTREAM_TRANSPORT = "httpx"  # what respx intercepts
    secret = "sk-live-SECRET0123456789abcdef"
    channel = Channel.objects.get(slug="deepseek")
    channel.mode, channel.base_url = "live", "https://upstream.internal.example/v1"
    channel.set_secret(secret)
    channel.save()
    with respx.mock() as upstream:
        sent = upstream.post("https://upstream.internal.example/v1/chat/completions").respond(
            401, json={"error": {"message": f"bad key {secret} at upstream.internal.example"}}
        )
        page = staff.post(f"{PAGE}deepseek/test/").text
    assert sent.calls.last.request.headers["authorization"] == f"Bearer {secret}"
    assert json.loads(sent.calls.last.request.content)["max_tokens"] == 1
    row = row_of(page, "deepseek")
    assert 'data-test="failed"' in row and "The upstream provider refused our access." in row
    assert secret not in page and "upstream.internal.example" not in page


def test_a_channel_with_only_media_models_has_no_test_call(staff, demo):
    media = ChannelFactory(slug="media-only", kind="openai")
    image = AIModelFactory(slug="img-x", family="image")
    Deployment.objects.create(model=image, channel=media, upstream_model="img-x")
    row = staff.post(f"{PAGE}media-only/test/", **HTMX).text
    assert 'data-test="unavailable"' in row and "not available" in row


def test_a_disabled_channel_is_out_of_routing_until_enabled_again(staff, world, demo):
    key = demo["default"]  # the data plane knows the key, not the console's session
    answer = staff.post(f"{PAGE}openai/disable/", **HTMX)
    assert answer.status_code == 200
    assert 'data-state="disabled"' in answer.text and 'hx-swap-oob="true"' in answer.text
    assert "channel.disabled" in answer.text  # the events, refreshed out of band

    refused = chat(staff, key, model="gpt-4.1-mini")  # served by openai alone
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "upstream_unavailable"
    assert chat(staff, key).headers["X-ByteSpike-Upstream"] == "azure"  # gpt-4.1's backup

    assert staff.post(f"{PAGE}openai/enable/").status_code == 302  # without htmx: to the page
    assert chat(staff, key, model="gpt-4.1-mini").status_code == 200

    events = AuditEvent.objects.filter(action__startswith="channel.").order_by("id")
    assert [(e.action, e.target, e.actor, e.account) for e in events] == [
        ("channel.disabled", "openai", staff.operator, None),
        ("channel.enabled", "openai", staff.operator, None),
    ]
    page = staff.get(PAGE).text
    assert "channel.enabled" in page and "ops@bytespike.test" in page
    # Account pages never show them.
    staff.force_login(world.owner)
    assert "channel.disabled" not in staff.get(reverse("accounts:audit")).text


def test_disabling_twice_is_audited_once(staff, demo):
    staff.post(f"{PAGE}openai/disable/")
    staff.post(f"{PAGE}openai/disable/")
    assert AuditEvent.objects.filter(action="channel.disabled").count() == 1


def test_the_buttons_need_csrf(client, world, demo):
    from django.test import Client

    guarded = Client(enforce_csrf_checks=True)
    guarded.force_login(UserFactory(is_staff=True))
    assert guarded.post(f"{PAGE}openai/disable/").status_code == 403
    assert Channel.objects.get(slug="openai").is_enabled


# --- The admin -----------------------------------------------------------------------------------


@pytest.fixture
def superuser(client, world):
    operator = UserFactory(email="root@bytespike.test", is_staff=True, is_superuser=True)
    client.force_login(operator)
    client.operator = operator
    return client


def admin_action(client, action: str, *slugs: str):
    ids = Channel.objects.filter(slug__in=slugs).values_list("pk", flat=True)
    return client.post(
        reverse("admin:catalogue_channel_changelist"),
        {"action": action, "_selected_action": list(ids)},
        follow=True,
    )


def test_the_channel_admin_shows_breakers_error_rate_and_p95(superuser, demo, settings):
    settings.BYTESPIKE_BREAKER_FAILURES = 1
    primary = deployment("gpt-4.1", "openai")
    for ok in (True, False, True, True):
        health.recorder.record(primary.pk, ok=ok, latency_ms=150)
    health.recorder.flush()
    async_to_sync(breakers.failed)(primary.pk)
    page = superuser.get(reverse("admin:catalogue_channel_changelist")).text
    assert "Breakers" in page and "Error rate (15 min)" in page and "Latency p95 (15 min)" in page
    assert "1 open, 4 closed" in page and "25.0% of 4" in page and "≤ 200 ms" in page


def test_the_channel_admin_actions(superuser, demo):
    tested = admin_action(superuser, "test_channels", "openai", "azure").text
    assert "OpenAI: 200 in" in tested and "Azure OpenAI (backup): 200 in" in tested

    disabled = admin_action(superuser, "disable_channels", "openai").text
    assert "Disabled: openai." in disabled
    assert not Channel.objects.get(slug="openai").is_enabled
    assert admin_action(superuser, "disable_channels", "openai").status_code == 200
    faults("openai", sandbox_failure_rate=1)
    failed = admin_action(superuser, "test_channels", "openai").text  # a disabled one too
    assert "OpenAI: 502 in" in failed and "The upstream provider failed (503)." in failed

    assert "Enabled: openai." in admin_action(superuser, "enable_channels", "openai").text
    assert Channel.objects.get(slug="openai").is_enabled
    events = AuditEvent.objects.filter(action__startswith="channel.").order_by("id")
    assert [(e.action, e.actor) for e in events] == [
        ("channel.disabled", superuser.operator),
        ("channel.enabled", superuser.operator),
    ]
    assert not UsageRecord.objects.exists()
