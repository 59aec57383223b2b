"""A deployment's circuit breaker across two real web processes sharing PostgreSQL and Redis:
failures seen by either count towards one trip, and once it is open neither sends a call there
(the second learns it from Redis, not from a failure of its own)."""

import time

import httpx
import pytest

from catalogue.models import Channel
from tests.factories import funded_keys
from tests.processes import shared_env, start_web, stop_all

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

SLOW_FAILURE_MS = 1500  # the primary fails, and takes this long to do it


@pytest.fixture
def two_web_processes(tmp_path):
    env = shared_env(
        tmp_path,
        BYTESPIKE_SANDBOX_LATENCY_MS="0",
        BYTESPIKE_SANDBOX_TOKEN_DELAY_MS="0",
        BYTESPIKE_BREAKER_FAILURES="3",
    )
    processes, bases = [], []
    try:
        for n in range(2):
            process, base = start_web(env, log=tmp_path / f"web-{n}.log")
            processes.append(process)
            bases.append(base)
        yield bases
    finally:
        stop_all(processes)


def chat(base: str, key: str) -> tuple[httpx.Response, float]:
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hello"}]}
    started = time.monotonic()
    response = httpx.post(
        f"{base}/v1/chat/completions", json=body, headers={"x-api-key": key}, timeout=30
    )
    return response, time.monotonic() - started


def test_a_breaker_is_tripped_by_two_processes_and_kept_by_both(world, two_web_processes):
    key = funded_keys(world.account, world.owner, credits=20)["default"]
    Channel.objects.filter(slug="openai").update(
        sandbox_failure_rate=1, sandbox_latency_ms=SLOW_FAILURE_MS
    )
    a, b = two_web_processes
    # One failure seen by B, two by A: three in a row between them, the breaker's threshold.
    for base in (b, a, a):
        response, took = chat(base, key)
        assert response.status_code == 200, response.text
        assert response.headers["X-ByteSpike-Upstream"] == "azure"
        assert took >= SLOW_FAILURE_MS / 1000  # it tried the failing primary first
    time.sleep(1.5)  # each process reads the open breakers from Redis once a second
    for base in (a, b):
        response, took = chat(base, key)
        assert response.status_code == 200
        assert response.headers["X-ByteSpike-Upstream"] == "azure"
        assert took < SLOW_FAILURE_MS / 1000, f"{base} tried the open primary"
