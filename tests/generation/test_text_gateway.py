"""The text routes in process: validation, routing, billing and upstream failures.

Streams, real SDKs and client disconnects are tested against a live server in tests/clients.
"""

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from billing.invariants import wallet_problems
from billing.metering import meter
from billing.models import Hold, LedgerEntry, UsageRecord, Wallet
from billing.pricing import TokenUsage, text_cost
from catalogue.demo import seed_catalogue
from catalogue.models import AIModel, Channel, ChannelMode
from generation import routing
from generation.dataplane import text
from tests.factories import funded_keys, issue_key

pytestmark = pytest.mark.django_db
M = 1_000_000


@pytest.fixture(autouse=True)
def _fresh_catalogue():
    routing.forget()
    yield
    routing.forget()


@pytest.fixture
def demo(world):
    return funded_keys(world.account, world.owner, credits=20)


def post(client, path, key, body, **headers):
    return client.post(
        path,
        data=json.dumps(body) if not isinstance(body, bytes | str) else body,
        content_type="application/json",
        headers={"x-api-key": key, **headers},
    )


def chat(client, key, model="gpt-4.1", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}], **extra}
    return post(client, "/v1/chat/completions", key, body)


def drain(world):
    """Spend the wallet down to nothing, through the books."""
    from billing.services import wallet_admin_adjust

    available = Wallet.objects.get(account=world.account).available
    wallet_admin_adjust(account=world.account, amount=-available, actor=world.owner, note="drain")


def nothing_held(account):
    assert not Hold.objects.filter(status="open").exists()
    assert Wallet.objects.get(account=account).held == 0
    assert wallet_problems(account.pk) == []


def test_a_call_is_billed_at_its_actual_usage(client, world, demo):
    response = chat(client, demo["default"], max_tokens=100)
    assert response.status_code == 200
    record = UsageRecord.objects.get()
    model = AIModel.objects.get(slug="gpt-4.1")
    expected = text_cost(
        model, 1, TokenUsage(input_tokens=record.input_tokens, output_tokens=record.output_tokens)
    )
    assert record.credits == expected > 0
    assert record.protocol == "openai" and not record.stream
    assert record.request_id == response.headers["X-Request-ID"]
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] == record.input_tokens
    assert usage["completion_tokens"] == record.output_tokens
    charge = LedgerEntry.objects.get(kind="charge")
    assert -charge.amount == record.credits
    nothing_held(world.account)


def test_success_answers_carry_wallet_and_limit_headers(client, world, demo):
    response = chat(client, demo["default"])
    available = Wallet.objects.get(account=world.account).available
    assert float(response.headers["X-Org-Quota-Remaining-Credits"]) == available / M
    assert "X-Quota-Remaining-Credits" not in response.headers
    groups = seed_catalogue()
    _, limited = issue_key(world.account, groups["default"], quota=5 * M, rate_limit_1d=2 * M)
    response = chat(client, limited)
    assert response.status_code == 200
    assert float(response.headers["X-Quota-Remaining-Credits"]) < 5
    assert response.headers["X-RateLimit-Limit"] == "2"
    assert float(response.headers["X-RateLimit-Remaining"]) < 2
    assert int(response.headers["X-RateLimit-Reset"]) > 0


def test_error_answers_carry_the_headers_too(client, world, demo):
    response = chat(client, demo["default"], model="nope")
    assert response.status_code == 400
    assert response.headers["X-Request-ID"].startswith("req_")
    assert "X-Org-Quota-Remaining-Credits" in response.headers


@pytest.mark.parametrize(
    ("path", "key", "body", "status", "param"),
    [
        ("/v1/chat/completions", "default", b"{not json", 400, None),
        ("/v1/chat/completions", "default", [1, 2], 400, None),
        ("/v1/chat/completions", "default", {"messages": [{"role": "user", "content": "x"}]},
         400, "model"),
        ("/v1/chat/completions", "default", {"model": "gpt-4.1"}, 400, "messages"),
        ("/v1/chat/completions", "default", {"model": "gpt-4.1", "messages": []}, 400, "messages"),
        ("/v1/chat/completions", "default",
         {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
         400, "temperature"),
        ("/v1/chat/completions", "default",
         {"model": "gpt-4.1", "messages": [{"role": "user", "content": [
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!"}}]}]},
         400, "messages[0].content[0].image_url"),
        ("/v1/chat/completions", "default",
         {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}],
          "tools": [{"type": "web_search"}]}, 400, "tools[0].type"),
        ("/v1/messages", "claude-default",
         {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]},
         400, "max_tokens"),
        ("/v1/responses", "default", {"model": "gpt-4.1"}, 400, "input"),
    ],
)  # fmt: skip
def test_bad_requests_are_400_naming_the_field_and_hold_nothing(
    client, world, demo, path, key, body, status, param
):
    response = post(client, path, demo[key], body)
    assert response.status_code == status
    payload = response.json()
    if path == "/v1/messages":
        assert payload["type"] == "error"
        assert payload["error"]["type"] == "invalid_request_error"
        assert param in payload["error"]["message"]
    else:
        assert payload["error"]["code"] == "invalid_param"
        assert payload["error"]["param"] == param
    nothing_held(world.account)
    assert not UsageRecord.objects.exists()


def test_gemini_bad_request_in_googles_envelope(client, world, demo):
    response = post(
        client, "/v1beta/models/gemini-2.5-pro:generateContent", demo["gemini-default"],
        {"contents": []},
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    nothing_held(world.account)


def test_oversized_body_is_413(client, world, demo, monkeypatch):
    monkeypatch.setattr(text, "MAX_BODY_BYTES", 1000)
    response = chat(client, demo["default"], user="x" * 2000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    nothing_held(world.account)


def test_a_body_over_djangos_form_limit_is_served_up_to_the_routes_own(client, world, demo):
    # Found by fuzzing: Django caps request.body at DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) with an
    # HTML 400; a long document or a few inline images are bigger, and the text limit is 32 MiB.
    long_document = {"role": "user", "content": "Summarise: " + "lorem ipsum " * 250_000}
    body = {"model": "gpt-4.1", "max_tokens": 10, "messages": [long_document]}
    response = post(client, "/v1/chat/completions", demo["default"], body)
    assert response.status_code == 200, response.content[:300]
    assert UsageRecord.objects.count() == 1


@pytest.mark.parametrize(
    ("path", "key", "envelope"),
    [
        ("/v1/chat/completions", "default", "openai"),
        ("/v1/messages", "claude-default", "anthropic"),
        ("/v1beta/models/gemini-2.5-flash:generateContent", "gemini-default", "gemini"),
    ],
)
def test_json_nested_deeper_than_the_parser_goes_is_a_400(client, world, demo, path, key, envelope):
    # Found by fuzzing: json.loads raises RecursionError (not ValueError) on deep nesting; a
    # 200 KB body of brackets was a 500.
    depth = 100_000
    response = post(client, path, demo[key], b"[" * depth + b"]" * depth)
    assert response.status_code == 400
    body = response.json()
    if envelope == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    elif envelope == "gemini":
        assert body["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert body["error"]["code"] == "invalid_param"
    nothing_held(world.account)


@pytest.mark.parametrize("surrogate", [b"\\ud800", b"\xed\xa0\x80"], ids=["escaped", "bytes"])
def test_a_lone_surrogate_is_a_400_and_a_pair_is_text(client, world, demo, surrogate):
    # Found by fuzzing: json.loads lets a lone surrogate through, escaped or as bytes, and it
    # is a string no database or encoder takes (a 500).
    for body in (
        b'{"model": "%s", "messages": [{"role": "user", "content": "Hi"}]}' % surrogate,
        b'{"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi %s"}]}' % surrogate,
    ):
        assert post(client, "/v1/chat/completions", demo["default"], body).status_code == 400
    nothing_held(world.account)
    emoji = '{"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi \\ud83e\\udd8a"}]}'
    assert post(client, "/v1/chat/completions", demo["default"], emoji).status_code == 200


@pytest.mark.parametrize(
    ("number", "status"),
    [(b"NaN", 400), (b"Infinity", 400), (b"-Infinity", 400), (b"1e999", 400), (b"0.5", 200)],
)
def test_numbers_json_has_not_are_a_400(client, world, demo, number, status):
    # Found by fuzzing: json.loads takes them, the upstream request's encoder does not (a 500).
    tool = b'{"name": "w", "input_schema": {"type": "object", "x": %s}}' % number
    hello = b'[{"role": "user", "content": "Hello"}]'
    for body in (
        b'{"model": "claude-haiku-4-5", "max_tokens": 9, "temperature": %s, "messages": %s}'
        % (number, hello),
        b'{"model": "claude-haiku-4-5", "max_tokens": 9, "tools": [%s], "messages": %s}'
        % (tool, hello),
    ):
        response = post(client, "/v1/messages", demo["claude-default"], body)
        assert response.status_code == status, response.content
    if status == 400:
        nothing_held(world.account)


def test_a_wrong_method_and_an_unknown_url_answer_in_the_envelope(client, demo):
    # Found by fuzzing: both were Django's own answers (an empty 405, the console's HTML 404),
    # without a request id.
    wrong = client.get("/v1/chat/completions", headers={"x-api-key": demo["default"]})
    assert wrong.status_code == 405 and wrong["Allow"] == "POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong["X-Request-ID"].startswith("req_")
    for path, envelope in [
        ("/v1/chat/completion", {"message", "type", "param", "code"}),
        ("/v1/tasks/cancel/", {"message", "type", "param", "code"}),
        ("/v1beta/models/:generateContent", {"code", "message", "status"}),
        ("/v1/models/gemini-2.5-flash/x:generateContent", {"code", "message", "status"}),
    ]:
        unknown = post(client, path, demo["default"], {})
        assert unknown.status_code == 404, path
        assert set(unknown.json()["error"]) == envelope, path
        assert unknown["X-Request-ID"].startswith("req_")


def test_unknown_model_and_model_outside_the_group(client, world, demo):
    unknown = chat(client, demo["default"], model="gpt-99")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "model_not_found"
    outside = chat(client, demo["default"], model="claude-sonnet-4-5")
    assert outside.status_code == 403
    assert outside.json()["error"]["code"] == "model_not_in_group"
    image = chat(client, demo["default"], model="gpt-image-1")
    assert image.status_code == 400 and "/v1/images/generations" in image.json()["error"]["message"]
    nothing_held(world.account)


def test_max_tokens_and_context_window_are_checked(client, world, demo):
    too_many = chat(client, demo["default"], max_tokens=10**6)
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "max_tokens"
    AIModel.objects.filter(slug="gpt-4.1").update(context_window=50)
    routing.forget()
    long = chat(client, demo["default"], messages=[{"role": "user", "content": "word " * 200}])
    assert long.status_code == 400
    assert long.json()["error"]["code"] == "context_length_exceeded"
    nothing_held(world.account)


def test_an_empty_wallet_quota_and_caps_refuse_before_the_upstream(client, world, demo):
    groups = seed_catalogue()
    _, quota_key = issue_key(world.account, groups["default"], quota=1)
    chat(client, quota_key)  # spends past the one micro-credit quota
    refused = chat(client, quota_key)
    assert refused.status_code == 402, refused.content
    assert refused.json()["error"]["code"] == "quota_exceeded"
    _, capped = issue_key(world.account, groups["default"], rate_limit_5h=1)
    chat(client, capped)
    limited = chat(client, capped)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(limited.headers["X-RateLimit-Reset"]) > 0
    Wallet.objects.filter(account=world.account).update(concurrency_limit=0)
    meter.forget()  # processes learn an account's new limit within ACCOUNT_SETTINGS_SECONDS
    busy = chat(client, demo["default"])
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "concurrency_limit"
    assert int(busy.headers["Retry-After"]) >= 1
    Wallet.objects.filter(account=world.account).update(concurrency_limit=25)
    meter.forget()
    drain(world)
    broke = chat(client, demo["default"])
    assert broke.status_code == 402
    assert broke.json()["error"]["code"] == "insufficient_balance"
    nothing_held(world.account)


@pytest.mark.parametrize(
    ("knob", "status", "code"),
    [
        ("[sandbox:status=401]", 502, "upstream_error"),
        ("[sandbox:status=403]", 502, "upstream_error"),
        ("[sandbox:status=429]", 429, "rate_limit_exceeded"),
        ("[sandbox:status=500]", 502, "upstream_error"),
        ("[sandbox:status=503]", 502, "upstream_error"),
        ("[sandbox:timeout]", 504, "upstream_timeout"),
    ],
)
def test_upstream_failures_are_mapped_and_free(client, world, demo, knob, status, code):
    before = Wallet.objects.get(account=world.account).balance
    response = chat(client, demo["default"], messages=[{"role": "user", "content": knob}])
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert Wallet.objects.get(account=world.account).balance == before
    assert not UsageRecord.objects.exists()
    assert Hold.objects.get().status == "released"
    nothing_held(world.account)


def test_upstream_failures_in_the_anthropic_envelope(client, world, demo):
    response = post(
        client, "/v1/messages", demo["claude-default"],
        {"model": "claude-sonnet-4-5", "max_tokens": 10,
         "messages": [{"role": "user", "content": "[sandbox:status=500]"}]},
    )  # fmt: skip
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"


def test_cached_tokens_are_billed_at_the_cache_price(client, world, demo):
    system = "You follow the house style. " * 200  # long enough for the sandbox to "cache"
    response = chat(
        client,
        demo["default"],
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "Hi"}],
    )
    assert response.status_code == 200
    record = UsageRecord.objects.get()
    assert record.cache_read_tokens > 0
    cached = response.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached == record.cache_read_tokens
    model = AIModel.objects.get(slug="gpt-4.1")
    assert record.credits == text_cost(
        model,
        1,
        TokenUsage(
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            cache_read_tokens=record.cache_read_tokens,
        ),
    )


def test_any_text_model_is_reachable_from_every_protocol(client, world, demo):
    key = demo["claude-default"]
    for model in ("claude-sonnet-4-5", "deepseek-chat", "gemini-2.5-flash"):
        assert chat(client, key, model=model).status_code == 200
        message = post(
            client, "/v1/messages", key,
            {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "x"}]},
        )  # fmt: skip
        assert message.status_code == 200 and message.json()["type"] == "message"
        response = post(client, "/v1/responses", key, {"model": model, "input": "x"})
        assert response.status_code == 200 and response.json()["object"] == "response"
        gemini = post(
            client, f"/v1beta/models/{model}:generateContent", key,
            {"contents": [{"role": "user", "parts": [{"text": "x"}]}]},
        )  # fmt: skip
        assert gemini.status_code == 200 and gemini.json()["candidates"]
    assert UsageRecord.objects.count() == 12
    assert wallet_problems(world.account.pk) == []


def test_queries_per_call_are_bounded_with_a_warm_key_cache(client, demo):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    chat(client, demo["default"])  # warms the key and catalogue caches
    with CaptureQueriesContext(connection) as captured:
        assert chat(client, demo["default"]).status_code == 200
    statements = [q["sql"] for q in captured if "SAVEPOINT" not in q["sql"]]
    # The hold: 4 statements; the settlement: 9 (ledger, usage, rollups). Nothing else.
    assert len(statements) <= 13, "\n".join(statements)


class Upstream:
    """A real HTTP server standing in for a provider: it records what it receives and answers
    with what the test queued (so the production transport, sockets and all, is exercised)."""

    def __init__(self):
        self.answers: list[tuple[int, dict]] = []
        self.requests: list[dict] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                upstream.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
                )
                status, payload = upstream.answers.pop(0)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def openai_live_at(upstream: Upstream, secret: str) -> None:
    """The demo's `openai` channel made live against ``upstream``, with ``secret``; GPT-4.1's
    backup deployment would answer instead, so it is off: the live channel is its only one."""
    channel = Channel.objects.get(slug="openai")
    channel.mode, channel.base_url = ChannelMode.LIVE, f"{upstream.url}/v1"
    channel.set_secret(secret)
    channel.save()
    Channel.objects.filter(slug="azure").update(is_enabled=False)
    routing.forget()


@pytest.fixture
def upstream():
    server = Upstream()
    yield server
    server.server.shutdown()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_live_channel_sends_its_secret_and_keeps_it_secret(
    client, world, demo, caplog, upstream, settings, transport
):
    settings.BYTESPIKE_UPSTREAM_TRANSPORT = transport
    caplog.set_level(logging.DEBUG)
    secret = "sk-live-UPSTREAMsecret0123456789abcdef"
    openai_live_at(upstream, secret)
    upstream.answers.append((401, {"error": {"message": f"Incorrect API key provided: {secret}"}}))
    response = chat(client, demo["default"])
    (seen,) = upstream.requests
    assert seen["path"] == "/v1/chat/completions"
    headers = {name.lower(): value for name, value in seen["headers"].items()}
    assert headers["authorization"] == f"Bearer {secret}"
    assert seen["json"]["model"] == "gpt-4.1"
    assert response.status_code == 502
    assert secret not in response.text and "UPSTREAMsecret" not in caplog.text
    nothing_held(world.account)

    upstream.answers.append((400, {"error": {"message": f"bad {secret}"}}))
    response = chat(client, demo["default"])
    assert response.status_code == 400 and secret not in response.text
    assert "[redacted]" in response.json()["error"]["message"]

    upstream.answers.append(
        (
            200,
            {
                "id": "chatcmpl-upstream123",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4.1-2025",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                          "prompt_tokens_details": {"cached_tokens": 4}},
            },
        )
    )  # fmt: skip
    response = chat(client, demo["default"])
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "Hi!"
    assert body["id"] != "chatcmpl-upstream123"  # our ids, never the upstream's
    record = UsageRecord.objects.get()
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (8, 4, 3)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_live_channel_that_refuses_connections_is_a_free_502(
    client, world, demo, settings, transport
):
    settings.BYTESPIKE_UPSTREAM_TRANSPORT = transport
    with socket.socket() as closed:  # a port nobody listens on once the socket is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    channel = Channel.objects.get(slug="openai")
    channel.mode, channel.base_url = ChannelMode.LIVE, f"http://127.0.0.1:{port}/v1"
    channel.set_secret("sk-live-unreachable-0123456789")
    channel.save()
    Channel.objects.filter(slug="azure").update(is_enabled=False)
    routing.forget()
    response = chat(client, demo["default"])
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "Could not reach the upstream provider."
    assert not UsageRecord.objects.exists()
    nothing_held(world.account)
