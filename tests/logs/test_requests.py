"""Every request ends with one access line (``request``), found by the id its answer carries in
X-Request-ID: data-plane calls with their key, model, upstream, status and credits, refusals
with their error code, and the console's and management API's requests with their user,
account and key."""

import json
from datetime import datetime

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from billing.models import UsageRecord
from generation import routing
from keys.models import ApiKey
from keys.services import key_digest, management_key_issue
from tests.conftest import read_body
from tests.factories import funded_keys, issue_key
from tests.test_metrics import chat, post

pytestmark = pytest.mark.django_db
UPSTREAM = "X-ByteSpike-Upstream"


@pytest.fixture
def keys(world):
    routing.forget()
    return funded_keys(world.account, world.owner, credits=20)


def key_of(secret: str) -> ApiKey:
    return ApiKey.objects.get(digest=key_digest(secret))


def test_a_text_call_ends_with_one_request_line(client, world, keys, json_logs):
    response = chat(client, keys["default"], max_tokens=50)
    assert response.status_code == 200
    request_id = response["X-Request-ID"]

    line = json_logs.one("request", request_id=request_id)
    record = UsageRecord.objects.get(request_id=request_id)
    assert record.credits > 0
    assert {key: line[key] for key in (
        "logger", "level", "message", "surface", "method", "route", "protocol", "status",
        "account_id", "key_id", "model", "upstream", "stream", "credits_micro",
    )} == {
        "logger": "bytespike.access", "level": "info", "message": "request",
        "surface": "data_plane", "method": "POST", "route": "v1-chat-completions",
        "protocol": "openai", "status": 200, "account_id": world.account.public_id,
        "key_id": key_of(keys["default"]).public_id, "model": "gpt-4.1",
        "upstream": response[UPSTREAM], "stream": False, "credits_micro": record.credits,
    }  # fmt: skip
    assert "error" not in line
    assert 0 <= line["upstream_ms"] <= line["duration_ms"]
    stamp = datetime.fromisoformat(line["timestamp"])
    assert line["timestamp"].endswith("Z") and stamp.utcoffset().total_seconds() == 0
    # Every line logged while the call ran names it.
    assert {one.get("request_id") for one in json_logs.lines()} == {request_id}


def test_a_streamed_call_logs_its_line_when_the_stream_ends(client, keys, json_logs):
    response = chat(client, keys["default"], stream=True)
    assert response.status_code == 200
    request_id = response["X-Request-ID"]
    assert json_logs.events("request", request_id=request_id) == []  # still streaming

    read_body(response)
    line = json_logs.one("request", request_id=request_id)
    record = UsageRecord.objects.get(request_id=request_id)
    assert line["stream"] is True and line["stream_end"] == "complete"
    assert line["status"] == 200 and line["credits_micro"] == record.credits > 0
    assert line["model"] == "gpt-4.1" and line["upstream"] == response[UPSTREAM]
    assert 0 <= line["first_byte_ms"] <= line["duration_ms"]


def test_a_stream_the_upstream_breaks_is_logged_free(keys, json_logs):
    body = {"model": "gpt-4.1", "stream": True,
            "messages": [{"role": "user", "content": "[sandbox:cut] go on"}]}  # fmt: skip

    async def call():  # in one event loop, as an ASGI server sends it
        response = await AsyncClient().post(
            "/v1/chat/completions", json.dumps(body), content_type="application/json",
            headers={"x-api-key": keys["default"]},
        )  # fmt: skip
        assert b'"error"' in b"".join([chunk async for chunk in response.streaming_content])
        return response

    response = async_to_sync(call)()
    line = json_logs.one("request", request_id=response["X-Request-ID"])
    assert line["stream_end"] == "upstream_error" and line["credits_micro"] == 0


def test_refused_calls_log_their_status_and_error_code(client, world, keys, json_logs):
    group = key_of(keys["default"]).group
    _, poor = issue_key(world.account, group, quota=1)  # one micro-credit
    refusals = [
        (chat(client, "sk-byts-" + "x" * 40), {"status": 401}),
        (chat(client, poor), {"status": 402, "model": "gpt-4.1"}),
        (post(client, "/v1/chat/completions", keys["default"],
              {"model": "no-such-model", "messages": []}), {"model": ""}),
        (client.get("/v1/no-such-route"), {"status": 404, "route": "v1-unknown"}),
    ]  # fmt: skip
    for response, expected in refusals:
        line = json_logs.one("request", request_id=response["X-Request-ID"])
        assert line["status"] == response.status_code >= 400
        assert line["error"] == response.json()["error"]["code"]
        assert expected.items() <= line.items(), line
        assert "credits_micro" not in line or line["credits_micro"] == 0
    unknown_key, poor_call = (json_logs.one("request", request_id=r["X-Request-ID"])
                              for r, _ in refusals[:2])  # fmt: skip
    assert "key_id" not in unknown_key and "account_id" not in unknown_key
    assert poor_call["key_id"] == key_of(poor).public_id
    assert poor_call["account_id"] == world.account.public_id


def test_a_console_page_gets_a_request_id_and_a_line_with_its_user(client_for, world, json_logs):
    client = client_for(world.owner)
    response = client.get("/")
    assert response.status_code == 200
    line = json_logs.one("request", request_id=response["X-Request-ID"])
    assert line["surface"] == "console" and line["route"] == "console:dashboard"
    assert line["method"] == "GET" and line["status"] == 200
    assert line["user_id"] == world.owner.pk and line["account_id"] == world.account.public_id
    assert line["duration_ms"] >= 0


def test_the_console_never_logs_a_path_only_its_route(client, json_logs):
    """A password reset link carries its token in the path: only the route's name is logged."""
    token = "set-password-TOKEN-9d8e7f"
    response = client.get(f"/auth/password/reset/key/1-{token}/")
    line = json_logs.one("request", request_id=response["X-Request-ID"])
    assert line["route"] == "account_reset_password_from_key"
    assert token not in json_logs.text


def test_a_management_api_call_logs_its_key_and_account(client, world, json_logs):
    key, secret = management_key_issue(account=world.account, actor=world.admin, name="CI")
    response = client.get("/api/v1/keys", headers={"x-api-key": secret})
    assert response.status_code == 200
    line = json_logs.one("request", request_id=response["X-Request-ID"])
    assert line["surface"] == "api" and line["status"] == 200
    assert line["key_id"] == key.public_id and line["account_id"] == world.account.public_id
    assert line["route"].startswith("api:")
    assert secret not in json_logs.text

    refused = client.get("/api/v1/keys", headers={"x-api-key": "sk-byts-admin-" + "y" * 40})
    line = json_logs.one("request", request_id=refused["X-Request-ID"])
    assert line["status"] == 401 and "key_id" not in line


def test_probes_get_a_request_id_but_no_line_at_info(client, json_logs):
    response = client.get("/healthz")
    assert response.status_code == 200 and response["X-Request-ID"].startswith("req_")
    assert json_logs.events("request") == []
