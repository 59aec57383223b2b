"""/metrics: who may scrape it, what real calls make it count, and what it never shows.

In process, each test process reports its own metrics (BYTESPIKE_METRICS_DIR is empty under
pytest), so a test compares two scrapes around its calls. The machine-wide folder is tested with
real processes in tests/test_metrics_processes.py.
"""

import json
import os
import subprocess
import sys

import pytest
from asgiref.sync import async_to_sync
from prometheus_client.parser import text_string_to_metric_families

from billing.models import UsageRecord, Wallet
from catalogue.models import Deployment, RoutingGroup
from generation import routing
from generation.breakers import breakers
from generation.models import Task
from tests.conftest import read_body
from tests.factories import funded_keys, issue_key
from tests.processes import ROOT
from tests.tasks import run_until_done

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-0123456789"
M = 1_000_000
UPSTREAM = "X-ByteSpike-Upstream"
IMAGE = {"model": "gpt-image-1", "prompt": "A paper boat", "quality": "low"}
MESSAGE = {
    "model": "claude-haiku-4-5",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "Hi"}],
}
VIDEO = {"model": "veo-3-fast", "params": {"prompt": "A fox", "duration": 4}}


class Samples:
    """A scrape's samples, by name and labels."""

    def __init__(self, text: str):
        self.text = text
        self.values = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def __call__(self, name: str, **labels) -> float:
        return self.values.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def scrape(client, settings):
    settings.BYTESPIKE_METRICS_TOKEN = TOKEN

    def read() -> Samples:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.content[:500]
        return Samples(response.content.decode())

    return read


@pytest.fixture
def keys(world):
    routing.forget()
    return funded_keys(world.account, world.owner, credits=20)


def post(client, path, key, body):
    return client.post(
        path, data=json.dumps(body), content_type="application/json", headers={"x-api-key": key}
    )


def chat(client, key, prompt="Hello", **extra):
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": prompt}], **extra}
    return post(client, "/v1/chat/completions", key, body)


def test_metrics_are_a_404_until_a_token_is_set_then_need_it(client, settings):
    settings.BYTESPIKE_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404

    settings.BYTESPIKE_METRICS_TOKEN = TOKEN
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    for sent in ("Bearer wrong", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer"):
        assert client.get("/metrics", headers={"Authorization": sent}).status_code == 401, sent
    assert TOKEN not in missing.content.decode()

    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-cache" in response["Cache-Control"]
    assert "# TYPE bytespike_holds_open gauge" in response.content.decode()


def test_answered_calls_are_counted_with_their_labels(
    client, world, keys, scrape, sandbox_clock, django_capture_on_commit_callbacks
):
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        answered = chat(client, keys["default"], max_tokens=50)
        streamed = chat(client, keys["default"], stream=True)
        read_body(streamed)  # the stream is billed at its end
        image = post(client, "/v1/images/generations", keys["default"], IMAGE)
        claude = post(client, "/v1/messages", keys["claude-default"], MESSAGE)
        submitted = post(client, "/v1/tasks/submit", keys["gemini-default"], VIDEO)
    for response in (answered, streamed, image, claude, submitted):
        assert response.status_code == 200, response.content[:300]
    after = scrape()

    def moved(name, **labels):
        return after(name, **labels) - before(name, **labels)

    upstream = answered[UPSTREAM]
    assert streamed[UPSTREAM] == upstream  # the primary tier has one deployment
    requests = "bytespike_requests_total"
    chat_labels = {"route": "v1-chat-completions", "protocol": "openai", "model": "gpt-4.1"}
    assert moved(requests, **chat_labels, status="200", upstream=upstream) == 2
    image_labels = {"route": "v1-images-generations", "protocol": "openai", "model": "gpt-image-1"}
    assert moved(requests, **image_labels, status="200", upstream=image[UPSTREAM]) == 1
    claude_labels = {"route": "v1-messages", "protocol": "anthropic", "model": "claude-haiku-4-5"}
    assert moved(requests, **claude_labels, status="200", upstream=claude[UPSTREAM]) == 1
    # A task's upstream is chosen later, by the worker.
    task_labels = {"route": "v1-tasks-submit", "protocol": "openai", "model": "veo-3-fast"}
    assert moved(requests, **task_labels, status="200", upstream="") == 1

    assert moved("bytespike_gateway_added_seconds_count", route="v1-chat-completions") == 2
    assert moved("bytespike_gateway_added_seconds_count", route="v1-tasks-submit") == 1
    attempts = {}
    for response in (answered, streamed, image, claude):
        name = response[UPSTREAM]
        attempts[name] = attempts.get(name, 0) + 1
    for name, count in attempts.items():
        assert moved("bytespike_upstream_latency_seconds_count", upstream=name, outcome="ok") == (
            count
        )
    assert moved("bytespike_stream_first_byte_seconds_count", model="gpt-4.1") == 1

    # Tokens and credits by model and group, as the usage rows have them.
    rows = UsageRecord.objects.filter(model__slug="gpt-4.1")
    assert rows.count() == 2
    group = {"model": "gpt-4.1", "group": "default"}
    tokens = "bytespike_tokens_total"
    assert moved(tokens, **group, kind="input") == sum(r.input_tokens for r in rows) > 0
    assert moved(tokens, **group, kind="output") == sum(r.output_tokens for r in rows) > 0
    assert moved("bytespike_credits_total", **group) == pytest.approx(
        sum(r.credits for r in rows) / M
    )
    image_row = UsageRecord.objects.get(model__slug="gpt-image-1")
    assert moved("bytespike_credits_total", model="gpt-image-1", group="default") == (
        pytest.approx(image_row.credits / M)
    )

    # Four calls were settled in batches; each one's wait was measured.
    assert moved("bytespike_settlement_lag_seconds_count") == 4
    assert moved("bytespike_settlement_batch_calls_sum", outcome="committed") == 4
    # Five requests looked their key up (hit or miss).
    lookups = sum(moved("bytespike_key_cache_lookups_total", result=r) for r in ("hit", "miss"))
    assert lookups == 5

    # Read at scrape time: the task waits for a worker, its estimate is held.
    assert after("bytespike_tasks", status="pending") == 1
    assert after("bytespike_tasks", status="running") == 0
    assert after("bytespike_holds_open", kind="task") == 1
    assert after("bytespike_holds_open_credits", kind="task") == (
        Wallet.objects.get(account=world.account).held / M
    )

    # The worker's side: its wait in the queue, then its end.
    task = Task.objects.get(public_id=submitted.json()["task_id"])
    with django_capture_on_commit_callbacks(execute=True):
        run_until_done(task, sandbox_clock)
    done = scrape()
    assert done("bytespike_task_queue_wait_seconds_count", model="veo-3-fast") == (
        before("bytespike_task_queue_wait_seconds_count", model="veo-3-fast") + 1
    )
    finished = {"model": "veo-3-fast", "status": "completed"}
    assert done("bytespike_tasks_finished_total", **finished) == (
        before("bytespike_tasks_finished_total", **finished) + 1
    )
    assert done("bytespike_tasks", status="pending") == done("bytespike_tasks", status="running")
    assert done("bytespike_tasks", status="running") == 0
    assert done("bytespike_holds_open", kind="task") == 0


def test_refusals_are_counted_by_status_with_the_model_the_catalogue_named(
    client, world, keys, scrape
):
    group = RoutingGroup.objects.get(slug="default")
    per_minute = issue_key(world.account, group, rpm=1)[1]
    micro_quota = issue_key(world.account, group, quota=1)[1]  # one micro-credit
    before = scrape()
    assert chat(client, per_minute).status_code == 200
    assert chat(client, per_minute).status_code == 429
    assert chat(client, micro_quota).status_code == 402
    assert chat(client, "not-a-key").status_code == 401
    assert post(client, "/v1/chat/completions", keys["default"],
                {"model": "no-such-model", "messages": []}).status_code == 400  # fmt: skip
    assert client.get("/v1/no-such-route").status_code == 404
    after = scrape()

    def moved(**labels):
        name = "bytespike_requests_total"
        return after(name, **labels) - before(name, **labels)

    route = {"route": "v1-chat-completions", "protocol": "openai"}
    refused = {**route, "model": "gpt-4.1", "upstream": ""}
    assert moved(**refused, status="429") == 1
    assert moved(**refused, status="402") == 1
    # Before a model is resolved, no name a caller sent becomes a label.
    assert moved(**route, model="", status="401", upstream="") == 1
    assert moved(**route, model="", status="400", upstream="") == 1
    assert moved(route="v1-unknown", protocol="openai", model="", status="404", upstream="") == 1
    assert "no-such-model" not in after.text and "no-such-route" not in after.text


def test_no_secret_prompt_or_upstream_credential_is_ever_in_a_scrape(
    client, world, keys, scrape, settings, django_capture_on_commit_callbacks
):
    """A live channel with a secret, a prompt with a marker, the key itself: none of them may
    reach a metric, whether the call fails upstream or succeeds."""
    from tests.generation.test_text_gateway import Upstream, openai_live_at

    upstream = Upstream()
    try:
        secret = "sk-live-UPSTREAMsecret0123456789abcdef"
        openai_live_at(upstream, secret)
        marker = "PROMPT-MARKER-7f3a9c"
        upstream.answers.append((401, {"error": {"message": f"Bad key {secret} for {marker}"}}))
        upstream.answers.append((200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": marker,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": marker},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }))  # fmt: skip
        with django_capture_on_commit_callbacks(execute=True):
            assert chat(client, keys["default"], prompt=marker).status_code == 502
            assert chat(client, keys["default"], prompt=marker).status_code == 200
            post(client, "/v1/chat/completions", keys["default"], {"model": marker})
    finally:
        upstream.server.shutdown()
    text = scrape().text
    assert 'upstream="openai"' in text  # the calls are there, by the channel's slug
    for leaked in (secret, "UPSTREAMsecret", marker, keys["default"], upstream.url):
        assert leaked not in text


def test_each_deployment_breaker_state_is_read_at_scrape_time(client, keys, scrape, settings):
    deployment = Deployment.objects.select_related("model", "channel").get(
        model__slug="gpt-4.1", channel__slug="openai"
    )
    labels = {"deployment": str(deployment.pk), "model": "gpt-4.1", "upstream": "openai"}
    state = "bytespike_breaker_state"
    closed = scrape()
    assert closed(state, **labels, state="closed") == 1
    assert closed(state, **labels, state="open") == 0

    for _ in range(settings.BYTESPIKE_BREAKER_FAILURES):
        async_to_sync(breakers.failed)(deployment.pk)
    opened = scrape()
    assert opened(state, **labels, state="open") == 1
    assert opened(state, **labels, state="closed") == 0


def test_the_metrics_and_logs_of_a_call_cost_well_under_a_third_of_a_millisecond(tmp_path):
    """benchmarks/metrics_cost.py records what one chat completion records, many times, in the
    multiprocess mode of production (files in a folder), then logs its access line in the json
    format too; the issue's budget is 0.3 ms a call for both."""
    done = subprocess.run(
        [sys.executable, "benchmarks/metrics_cost.py", "--calls", "20000", "--json"],
        cwd=ROOT,
        env={
            **os.environ,
            "BYTESPIKE_DATA_DIR": str(tmp_path),
            "BYTESPIKE_METRICS_DIR": str(tmp_path / "metrics"),
            "BYTESPIKE_LOG_FORMAT": "json",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["multiprocess"] is True and result["log_format"] == "json"
    assert result["microseconds_per_call"] < 300
    assert result["combined_microseconds_per_call"] < 300
