"""OpenTelemetry traces (core/tracing.py): off and free without an endpoint; with one, a call is
one trace holding its steps, exported here to an in-memory exporter, with no secret or prompt
in any span."""

import json

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from catalogue.models import Channel, ChannelMode
from console.asgi import route
from core import tracing
from generation import routing
from generation.jobs import task_advance
from generation.models import Task
from tests.factories import funded_keys
from tests.fuzz import asgi

pytestmark = pytest.mark.django_db
PROMPT = "the-secret-prompt-PURPLE-ELEPHANT"


@pytest.fixture
def spans(keep_test_connection):
    exporter = InMemorySpanExporter()
    assert tracing.setup(exporter)
    yield exporter
    tracing.shutdown()


@pytest.fixture
def keys(world):
    routing.forget()
    return funded_keys(world.account, world.owner, credits=20)


def call(path: str, key: str, body: dict) -> asgi.Answer:
    headers = [(b"x-api-key", key.encode()), (b"content-type", b"application/json")]
    app = tracing.wrap_asgi(route)
    return asgi.request("POST", path, headers, json.dumps(body).encode(), app=app)


def chat(key: str, **extra) -> asgi.Answer:
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": PROMPT}], **extra}
    return call("/v1/chat/completions", key, body)


def trace_of(exporter, answer: asgi.Answer) -> list:
    """The spans of the trace whose request span names the answer's request id."""
    finished = exporter.get_finished_spans()
    (server,) = [
        span
        for span in finished
        if span.kind == SpanKind.SERVER
        and span.attributes.get("bytespike.request_id") == answer.headers["x-request-id"]
    ]
    return [span for span in finished if span.context.trace_id == server.context.trace_id]


def leaked(spans: list, *secrets: str) -> list:
    return [
        (span.name, name)
        for span in spans
        for name, value in span.attributes.items()
        if any(secret in str(value) for secret in secrets)
    ]


def test_without_an_endpoint_tracing_is_off_and_a_no_op(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert not tracing.configured() and not tracing.setup() and not tracing.enabled()
    assert tracing.span("admission") is tracing.span("settlement")  # one shared no-op
    assert tracing.wrap_asgi(route) is route
    tracing.annotate(anything="ignored")


def test_a_call_is_one_trace_with_each_of_its_steps(spans, keys):
    answer = chat(keys["default"])
    assert answer.status == 200, answer.body
    steps = trace_of(spans, answer)
    names = [span.name for span in steps]
    for step in ("key auth", "admission", "upstream call", "settlement"):
        assert names.count(step) == 1, names
    (server,) = [span for span in steps if span.kind == SpanKind.SERVER]
    assert server.attributes["http.request.method" if "http.request.method" in
                             server.attributes else "http.method"] == "POST"  # fmt: skip
    assert server.attributes["bytespike.key"].startswith("key_")
    (upstream,) = [span for span in steps if span.name == "upstream call"]
    assert upstream.attributes["bytespike.upstream"] == answer.headers["x-bytespike-upstream"]
    # Every step is a child of the request: the same trace, and under its span.
    assert all(span.parent is not None for span in steps if span is not server)
    assert leaked(steps, keys["default"], PROMPT) == []


def test_a_failover_is_one_span_per_attempt(spans, keys):
    Channel.objects.filter(slug="openai").update(sandbox_failure_rate=1)
    routing.forget()
    answer = chat(keys["default"])
    assert answer.status == 200 and answer.headers["x-bytespike-upstream"] == "azure"
    attempts = [span for span in trace_of(spans, answer) if span.name == "upstream call"]
    assert [span.attributes["bytespike.upstream"] for span in attempts] == ["openai", "azure"]
    assert not attempts[0].status.is_ok and attempts[1].status.is_ok


def test_a_live_upstream_call_is_an_http_client_span_without_the_channel_secret(
    spans, keys, settings
):
    from tests.generation.test_text_gateway import Upstream

    server = Upstream()
    try:
        secret = "sk-live-TRACEDsecret0123456789"
        channel = Channel.objects.get(slug="openai")
        channel.mode, channel.base_url = ChannelMode.LIVE, f"{server.url}/v1"
        channel.set_secret(secret)
        channel.save()
        Channel.objects.filter(slug="azure").update(is_enabled=False)
        routing.forget()
        server.answers.append((200, {
            "id": "x", "object": "chat.completion", "created": 1, "model": "gpt-4.1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }))  # fmt: skip
        answer = chat(keys["default"])
        assert answer.status == 200, answer.body
    finally:
        server.server.shutdown()
    steps = trace_of(spans, answer)
    (attempt,) = [span for span in steps if span.name == "upstream call"]
    clients = [span for span in steps if span.kind == SpanKind.CLIENT]
    assert clients and all(span.parent.span_id == attempt.context.span_id for span in clients)
    # The upstream got the trace context, as any OpenTelemetry-instrumented service expects.
    (sent,) = server.requests
    headers = {name.lower(): value for name, value in sent["headers"].items()}
    assert format(attempt.context.trace_id, "032x") in headers["traceparent"]
    assert leaked(steps, secret, keys["default"], PROMPT) == []


def test_a_task_step_is_a_span_of_its_own(spans, keys):
    body = {"model": "imagen-4", "params": {"prompt": PROMPT}}
    answer = call("/v1/tasks/submit", keys["gemini-default"], body)
    assert answer.status == 200, answer.body
    assert {"key auth", "admission"} <= {span.name for span in trace_of(spans, answer)}
    task = Task.objects.get()
    task_advance(task.pk, task.lease)
    (step,) = [span for span in spans.get_finished_spans() if span.name == "task step"]
    assert step.attributes["bytespike.task"] == task.pk
    assert leaked(spans.get_finished_spans(), keys["gemini-default"], PROMPT) == []
