"""Streams against a live gateway: headers before the first byte, a client that leaves early
pays for what it was sent (and the upstream is closed), an upstream that breaks costs nothing."""

import json

import httpx
import pytest

from billing.invariants import wallet_problems
from billing.models import Hold, UsageRecord
from tests.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def stream_chat(gateway, key, content, **extra):
    body = {"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": content}]}
    return httpx.stream(
        "POST",
        f"{gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={**body, **extra},
        timeout=30,
    )


def test_headers_arrive_before_the_first_byte(gateway, demo):
    with stream_chat(gateway, demo["keys"]["default"], "[sandbox:words=50]") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["X-Request-ID"].startswith("req_")
        assert float(response.headers["X-Org-Quota-Remaining-Credits"]) > 0
        body = response.read().decode()
    assert body.rstrip().endswith("data: [DONE]")


def test_a_client_that_leaves_early_pays_for_what_it_was_sent(gateway, demo):
    with stream_chat(
        gateway, demo["keys"]["default"], "[sandbox:words=400] [sandbox:delay=15]"
    ) as response:
        request_id = response.headers["X-Request-ID"]
        received = []
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                received.append(chunk["choices"][0]["delta"].get("content") or "")
            if len(received) >= 20:
                break  # leave: closing the stream drops the connection
    assert wait_until(
        lambda: Hold.objects.filter(reference=request_id, status="settled").exists(), 15
    ), "the early-closed stream was never billed"
    record = UsageRecord.objects.get(request_id=request_id)
    assert record.stream and record.credits > 0
    assert 0 < record.output_tokens < 400  # what was delivered, not the whole answer
    assert wallet_problems(demo["account"].pk) == []
    log = gateway.log.read_text
    assert wait_until(lambda: "sandbox stream closed early" in log(), 10), log()
    assert f"stream {request_id} ended early" in log()


def test_an_upstream_that_breaks_mid_stream_costs_nothing(gateway, demo):
    with stream_chat(gateway, demo["keys"]["default"], "[sandbox:cut] [sandbox:words=40]") as r:
        request_id = r.headers["X-Request-ID"]
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert "error" in json.loads(lines[-2][6:]) and lines[-1] == "data: [DONE]"
    assert wait_until(
        lambda: Hold.objects.filter(reference=request_id, status="released").exists(), 10
    )
    assert not UsageRecord.objects.filter(request_id=request_id).exists()
    assert wallet_problems(demo["account"].pk) == []


def test_an_upstream_refusing_at_once_is_a_real_http_error(gateway, demo):
    with stream_chat(gateway, demo["keys"]["default"], "[sandbox:status=503]") as response:
        assert response.status_code == 502
        assert json.loads(response.read())["error"]["code"] == "upstream_error"
        assert "X-Org-Quota-Remaining-Credits" in response.headers
    assert not Hold.objects.filter(status="open").exists()
