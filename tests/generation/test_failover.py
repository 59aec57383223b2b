"""Deployments, failover and aliases: a call goes to the highest healthy priority tier, spread by
weight; an attempt that fails before its first byte moves on to the next deployment within the
model's budget; the caller's own errors are never retried; the answer names the channel that
served it, the usage row records the deployment, and the caller pays once."""

import asyncio
import json
import random
import time
from collections import Counter

import aiohttp
import httpx
import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from billing.invariants import wallet_problems
from billing.models import Hold, UsageRecord
from catalogue.models import AIModel, Channel, Deployment, ModelAlias, RoutingGroup
from generation import failover
from generation.breakers import breakers
from generation.models import Task
from generation.providers import ChannelRoute, UpstreamError, upstream_error_for, upstream_errors
from generation.routing import Target, Upstream, attempt_order, forget
from tests.factories import funded_keys
from tests.tasks import run_until_done

pytestmark = pytest.mark.django_db

M = 1_000_000
MESSAGES = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def demo(world, settings):
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    keys = funded_keys(world.account, world.owner, credits=20)
    forget()
    return keys


def faults(slug, **fields):
    Channel.objects.filter(slug=slug).update(**fields)
    forget()


def chat_streamed(key, body=None):
    """A streamed call read to its end in one event loop, as an ASGI server reads it."""
    body = {"model": "gpt-4.1", "messages": MESSAGES, "stream": True, **(body or {})}

    async def call():
        response = await AsyncClient().post(
            "/v1/chat/completions", json.dumps(body), content_type="application/json",
            headers={"x-api-key": key},
        )  # fmt: skip
        if not response.streaming:
            return response, response.content.decode()
        return response, b"".join([chunk async for chunk in response.streaming_content]).decode()

    return async_to_sync(call)()


def chat(client, key, body=None, **extra):
    body = {"model": "gpt-4.1", "messages": MESSAGES, **(body or {})}
    return client.post(
        "/v1/chat/completions", json.dumps(body), content_type="application/json",
        headers={"x-api-key": key, **extra},
    )  # fmt: skip


def served_by(response, world, channel):
    """The answer names the channel, its one usage row the deployment, and the books agree."""
    assert response.headers["X-ByteSpike-Upstream"] == channel
    record = UsageRecord.objects.order_by("-id").first()
    assert record.deployment.channel.slug == channel
    assert not Hold.objects.filter(status="open").exists()
    assert wallet_problems(world.account.pk) == []
    return record


# --- Order -------------------------------------------------------------------------------------


def upstream(pk, priority=0, weight=1):
    route = ChannelRoute(pk=pk, kind="openai", sandbox=True, base_url="", secret="")
    return Upstream(pk, f"c{pk}", route, "m", priority, weight)


def test_tiers_go_highest_priority_first_and_weight_zero_last_in_its_tier():
    upstreams = (upstream(1, 5, 0), upstream(2, 5, 1), upstream(3, 0, 1), upstream(4, 0, 2))
    for seed in range(20):
        order = [u.deployment_id for u in attempt_order(upstreams, random.Random(seed))]
        assert order[:2] == [2, 1]
        assert set(order[2:]) == {3, 4}


def test_weights_spread_a_tier_in_proportion():
    upstreams = (upstream(1, weight=3), upstream(2, weight=1))
    rng = random.Random(7)
    firsts = Counter(attempt_order(upstreams, rng)[0].deployment_id for _ in range(8000))
    # 3:1 expected: 6000 of 8000 (binomial sd ~39); a 1:1 spread would give ~4000.
    assert 5800 < firsts[1] < 6200


def test_a_healthy_primary_serves_and_the_answer_names_it(client, world, demo):
    response = chat(client, demo["default"])
    assert response.status_code == 200
    assert response.json()["model"] == "gpt-4.1"
    served_by(response, world, "openai")


# --- Failover ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", [{"sandbox_failure_rate": 1}, {"sandbox_timeout_rate": 1}], ids=["503", "timeout"]
)
def test_a_failing_primary_fails_over_and_the_caller_pays_once(client, world, demo, fault):
    faults("openai", **fault)
    response = chat(client, demo["default"])
    assert response.status_code == 200, response.content
    record = served_by(response, world, "azure")
    assert record.credits > 0
    assert Deployment.objects.get(pk=record.deployment_id).upstream_model == "gpt-41-prod"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_primary_slower_than_the_attempt_timeout_fails_over(client, world, demo, stream):
    AIModel.objects.filter(slug="gpt-4.1").update(attempt_timeout_seconds=1)
    faults("openai", sandbox_latency_ms=5000)
    started = time.monotonic()
    if stream:
        response, text = chat_streamed(demo["default"])
        assert "[DONE]" in text
    else:
        response = chat(client, demo["default"])
    assert time.monotonic() - started < 4
    assert response.status_code == 200
    served_by(response, world, "azure")


def test_an_outage_window_fails_over(client, world, demo):
    from django.utils import timezone

    now = timezone.now()
    faults(
        "openai",
        sandbox_outage_start=now - timezone.timedelta(minutes=1),
        sandbox_outage_end=now + timezone.timedelta(minutes=1),
    )
    served_by(chat(client, demo["default"]), world, "azure")


def test_a_stream_fails_over_before_its_first_byte(client, world, demo):
    faults("openai", sandbox_failure_rate=1)
    response, text = chat_streamed(demo["default"])
    assert response.status_code == 200
    assert '"finish_reason":"stop"' in text.replace(" ", "") and "[DONE]" in text
    served_by(response, world, "azure")


def test_a_stream_broken_after_its_first_byte_is_not_retried_and_is_free(client, world, demo):
    body = {"messages": [{"role": "user", "content": "[sandbox:cut] go on"}]}
    response, text = chat_streamed(demo["default"], body)
    assert response.status_code == 200
    assert response.headers["X-ByteSpike-Upstream"] == "openai"
    assert '"error"' in text
    assert not UsageRecord.objects.exists()
    assert wallet_problems(world.account.pk) == []


def test_the_callers_own_error_is_not_retried(client, world, demo):
    calls = []
    real = failover.breakers.failed

    async def counted(deployment_id, retry_after=None):
        calls.append(deployment_id)
        await real(deployment_id, retry_after)

    body = {"messages": [{"role": "user", "content": "[sandbox:status=400] hi"}]}
    failover.breakers.failed = counted
    try:
        response = chat(client, demo["default"], body)
    finally:
        failover.breakers.failed = real
    assert response.status_code == 400
    assert calls == []
    assert not UsageRecord.objects.exists()


def test_every_deployment_failing_is_the_last_error_and_free(client, world, demo):
    faults("openai", sandbox_failure_rate=1)
    faults("azure", sandbox_failure_rate=1)
    response = chat(client, demo["default"])
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert not UsageRecord.objects.exists()
    assert not Hold.objects.filter(status="open").exists()
    assert wallet_problems(world.account.pk) == []


def test_when_every_breaker_is_open_the_call_is_refused_at_once(client, world, demo, settings):
    faults("openai", sandbox_failure_rate=1)
    faults("azure", sandbox_failure_rate=1)
    for _ in range(settings.BYTESPIKE_BREAKER_FAILURES):
        assert chat(client, demo["default"]).status_code == 502
    faults("openai", sandbox_failure_rate=0, sandbox_latency_ms=5000)  # would be slow if tried
    response = chat(client, demo["default"])
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert not UsageRecord.objects.exists()
    assert wallet_problems(world.account.pk) == []


def test_a_disabled_channel_gets_no_calls(client, world, demo):
    faults("openai", is_enabled=False)
    served_by(chat(client, demo["default"]), world, "azure")
    faults("azure", is_enabled=False)
    response = chat(client, demo["default"])
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"


def test_the_retry_budget_stops_failover(client, world, demo):
    AIModel.objects.filter(slug="gpt-4.1").update(max_attempts=1)
    faults("openai", sandbox_failure_rate=1)
    assert chat(client, demo["default"]).status_code == 502


def test_failover_in_the_anthropic_envelope_and_on_images(client, world, demo):
    faults("openai", sandbox_failure_rate=1)
    body = {"model": "gpt-4.1", "max_tokens": 50, "messages": MESSAGES}
    response = client.post(
        "/v1/messages", json.dumps(body), content_type="application/json",
        headers={"x-api-key": demo["default"]},
    )  # fmt: skip
    assert response.status_code == 200
    served_by(response, world, "azure")
    image = AIModel.objects.get(slug="gpt-image-1")
    Deployment.objects.create(
        model=image, channel=Channel.objects.get(slug="azure"), upstream_model="img", priority=-1
    )
    forget()
    body = {"model": "gpt-image-1", "prompt": "A paper boat", "size": "1024x1024"}
    response = client.post(
        "/v1/images/generations", json.dumps(body), content_type="application/json",
        headers={"x-api-key": demo["default"]},
    )  # fmt: skip
    assert response.status_code == 200, response.content
    served_by(response, world, "azure")


# --- Which errors move on ----------------------------------------------------------------------


def _target(n=3, max_attempts=3):
    model = AIModel(slug="m", max_attempts=max_attempts, failover_deadline_seconds=30)
    return Target(model, 1, tuple(upstream(pk) for pk in range(1, n + 1)))


def _run(target, failures):
    """Attempts that fail with ``failures`` in turn, then answer: the attempts made."""
    made = []

    async def attempt(up):
        made.append(up.deployment_id)
        if len(made) <= len(failures):
            raise failures[len(made) - 1]
        return "answer"

    async def go():
        return await failover.first_answer(target, attempt, started=time.monotonic())

    breakers.reset()
    try:
        return asyncio.run(go()), made
    except UpstreamError as error:
        return error, made


def _transport(error_class):
    try:
        with upstream_errors(ChannelRoute(1, "openai", True, "", "")):
            raise error_class("boom")
    except UpstreamError as error:
        return error


@pytest.mark.parametrize(
    "failure",
    [
        lambda: upstream_error_for(429, b"{}", "2"),
        lambda: upstream_error_for(500, b"{}"),
        lambda: upstream_error_for(502, b"{}"),
        lambda: upstream_error_for(503, b"{}"),
        lambda: upstream_error_for(529, b"{}"),
        lambda: upstream_error_for(401, b"{}"),  # our credentials on that channel
        lambda: _transport(httpx.ConnectError),
        lambda: _transport(httpx.ReadTimeout),
        lambda: _transport(aiohttp.ClientConnectionError),
        lambda: _transport(aiohttp.SocketTimeoutError),
        lambda: failover.Unreadable(),
    ],
    ids=[
        "429",
        "500",
        "502",
        "503",
        "529",
        "401",
        "connect",
        "timeout",
        "aiohttp-connect",
        "aiohttp-timeout",
        "unreadable",
    ],
)
def test_retryable_failures_move_on(failure):
    result, made = _run(_target(), [failure()])
    assert result[1] == "answer"
    assert len(made) == 2


def test_transport_failures_of_either_client_are_a_502_or_a_timeout_504():
    for error, status in [(httpx.ConnectError, 502), (aiohttp.ClientConnectionError, 502),
                          (httpx.ReadTimeout, 504), (aiohttp.SocketTimeoutError, 504),
                          (aiohttp.ConnectionTimeoutError, 504)]:  # fmt: skip
        assert _transport(error).status == status, error


@pytest.mark.parametrize("status", [400, 413, 422])
def test_the_callers_errors_are_never_retried(status):
    error, made = _run(_target(), [upstream_error_for(status, b'{"error": {"message": "no"}}')])
    assert isinstance(error, UpstreamError) and error.status == 400
    assert len(made) == 1


def test_the_budget_and_the_deadline_bound_the_attempts():
    failures = [upstream_error_for(503, b"{}")] * 3
    error, made = _run(_target(n=3, max_attempts=2), failures)
    assert isinstance(error, UpstreamError) and len(made) == 2

    target = _target(n=3)
    target.model.failover_deadline_seconds = 0
    made = []

    async def slow(up):
        made.append(up.deployment_id)
        await asyncio.sleep(0.01)
        raise upstream_error_for(503, b"{}")

    async def go():
        return await failover.first_answer(target, slow, started=time.monotonic())

    breakers.reset()
    with pytest.raises(UpstreamError):
        asyncio.run(go())
    assert len(made) == 1


# --- Tasks -------------------------------------------------------------------------------------


def test_a_task_fails_over_at_submit_and_stays_with_its_deployment(
    client, world, demo, sandbox_clock, enqueued
):
    sora = AIModel.objects.get(slug="sora-2")
    Deployment.objects.create(
        model=sora, channel=Channel.objects.get(slug="azure"), upstream_model="sora-2-prod"
    )
    faults("openai", sandbox_failure_rate=1)
    body = {"model": "sora-2", "params": {"prompt": "A fox in the snow", "duration": 4}}
    response = client.post(
        "/v1/tasks/submit", json.dumps(body), content_type="application/json",
        headers={"x-api-key": demo["default"]},
    )  # fmt: skip
    assert response.status_code == 200
    task = Task.objects.get(public_id=response.json()["task_id"])
    task = run_until_done(task, sandbox_clock)
    assert task.status == "completed", task.error
    assert task.deployment.channel.slug == "azure"
    assert UsageRecord.objects.get().deployment_id == task.deployment_id
    assert wallet_problems(world.account.pk) == []


# --- Aliases -----------------------------------------------------------------------------------


def test_an_alias_of_the_group_reaches_its_model(client, world, demo):
    group = RoutingGroup.objects.get(slug="default")
    ModelAlias.objects.create(group=group, alias="gpt-latest", target="gpt-smart")
    ModelAlias.objects.create(group=group, alias="gpt-smart", target="gpt-4.1")
    forget()
    response = chat(client, demo["default"], {"model": "gpt-latest"})
    assert response.status_code == 200
    assert response.json()["model"] == "gpt-4.1"
    assert UsageRecord.objects.get().model.slug == "gpt-4.1"
    other = RoutingGroup.objects.get(slug="claude-default")
    ModelAlias.objects.create(group=other, alias="house", target="claude-haiku-4-5")
    forget()
    missing = chat(client, demo["default"], {"model": "house"})
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "model_not_found"


def test_models_lists_a_groups_aliases_under_the_allowlist(client, world, demo):
    group = RoutingGroup.objects.get(slug="default")
    ModelAlias.objects.create(group=group, alias="gpt-latest", target="gpt-4.1")
    ModelAlias.objects.create(group=group, alias="mini", target="gpt-4.1-mini")
    forget()
    listed = client.get("/v1/models", headers={"x-api-key": demo["default"]}).json()["data"]
    entries = {entry["id"]: entry for entry in listed}
    assert entries["gpt-latest"]["alias_of"] == "gpt-4.1"
    assert "alias_of" not in entries["gpt-4.1"]
    from tests.factories import issue_key

    _, narrow = issue_key(world.account, group, actor=world.owner, allowed_models=["gpt-4.1"])
    listed = client.get("/v1/models", headers={"x-api-key": narrow}).json()["data"]
    assert {entry["id"] for entry in listed} == {"gpt-4.1", "gpt-latest"}
    refused = chat(client, narrow, {"model": "mini"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"
