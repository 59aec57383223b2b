"""No log line, in either format, holds an inference key's secret, a prompt or an upstream
credential: calls that succeed and fail through a live channel whose secret is known, with a
marker in every prompt, and a task whose callback URL carries a token."""

import json

import pytest

from tests.conftest import read_body
from tests.factories import funded_keys
from tests.generation.test_text_gateway import Upstream, openai_live_at
from tests.logs.conftest import work
from tests.test_metrics import post

pytestmark = pytest.mark.django_db
UPSTREAM_SECRET = "sk-live-UPSTREAMsecret0123456789abcdef"
MARKER = "PROMPT-MARKER-7f3a9c"
CALLBACK_TOKEN = "hook-TOKEN-51b7e0"


def answer(content: str) -> dict:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MARKER,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }  # fmt: skip


def test_no_key_prompt_or_upstream_secret_reaches_a_log_line(
    client, world, settings, json_logs, text_logs, receiver, enqueued, sandbox_clock,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    keys = funded_keys(world.account, world.owner, credits=20)
    upstream = Upstream()
    try:
        openai_live_at(upstream, UPSTREAM_SECRET)
        upstream.answers += [
            (401, {"error": {"message": f"Bad key {UPSTREAM_SECRET} for {MARKER}"}}),
            (200, answer(MARKER)),
        ]
        chat = {"model": "gpt-4.1", "messages": [{"role": "user", "content": MARKER}]}
        with django_capture_on_commit_callbacks(execute=True):
            failed = post(client, "/v1/chat/completions", keys["default"], chat)
            answered = post(client, "/v1/chat/completions", keys["default"], chat)
            unknown = post(client, "/v1/chat/completions", keys["default"], {"model": MARKER})
            streamed = post(client, "/v1/messages", keys["claude-default"], {
                "model": "claude-haiku-4-5", "max_tokens": 20, "stream": True,
                "messages": [{"role": "user", "content": MARKER}],
            })  # fmt: skip
            read_body(streamed)
            gemini = client.post(
                f"/v1beta/models/gemini-2.5-flash:generateContent?key={keys['gemini-default']}",
                json.dumps({"contents": [{"role": "user", "parts": [{"text": MARKER}]}]}),
                content_type="application/json",
            )
            task = post(client, "/v1/tasks/submit", keys["gemini-default"], {
                "model": "veo-3-fast", "callback_url": f"{receiver.url}?token={CALLBACK_TOKEN}",
                "params": {"prompt": f"[sandbox:seconds=0.3] {MARKER}", "duration": 4},
            })  # fmt: skip
        work(enqueued, sandbox_clock, django_capture_on_commit_callbacks)
    finally:
        upstream.server.shutdown()

    assert (failed.status_code, answered.status_code, streamed.status_code) == (502, 200, 200)
    assert unknown.status_code >= 400 and gemini.status_code == 200
    assert len(receiver.requests) == 1  # the task finished and its callback went out
    calls = (failed, answered, unknown, streamed, gemini, task)
    assert {line["request_id"] for line in json_logs.events("request")} == {
        response["X-Request-ID"] for response in calls
    }
    assert json_logs.events("task.transition") and json_logs.events("callback.attempt")
    assert len(json_logs.lines()) == len(text_logs.text.splitlines())
    for output in (json_logs.text, text_logs.text):
        for secret in (*keys.values(), UPSTREAM_SECRET, "UPSTREAMsecret", MARKER,
                       CALLBACK_TOKEN, upstream.url):  # fmt: skip
            assert secret not in output
