"""Streams already under way when the database goes away (benchmarks/soak.py restarts it): each
ends in its protocol's way, never as a connection cut without an end, and nothing is billed for
what could not be written down."""

import json

import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError
from django.test import AsyncClient

from billing import batches
from billing.invariants import wallet_problems
from billing.jobs import release_stale_holds
from billing.models import Hold, UsageRecord
from generation import services
from generation.dataplane import tasks as task_views
from generation.models import Task
from tests.conftest import read_body
from tests.factories import funded_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(world):
    return funded_key(world.account, world.owner, credits=20)[1]


HI = [{"role": "user", "content": "Hi"}]
STREAMS = {
    # protocol: (path, body, what says the answer ended well, what says it failed)
    "chat": ("/v1/chat/completions", {"model": "gpt-4.1", "stream": True, "messages": HI},
             '"finish_reason":"stop"', '"error"'),
    "responses": ("/v1/responses", {"model": "gpt-4.1", "stream": True, "input": "Hi"},
                  "response.completed", "response.failed"),
    "messages": ("/v1/messages",
                 {"model": "gpt-4.1", "stream": True, "max_tokens": 50, "messages": HI},
                 "message_stop", "event: error"),
    "gemini": ("/v1beta/models/gpt-4.1:streamGenerateContent?alt=sse",
               {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
               '"finishReason"', '"error"'),
}  # fmt: skip


@pytest.mark.parametrize("protocol", STREAMS)
def test_a_stream_whose_settlement_cannot_be_written_ends_with_an_error_and_is_free(
    client, world, key, monkeypatch, settings, protocol
):
    """The answer's end goes out only after the call is billed: a client never sees a complete
    answer (response.completed, message_stop, a finish reason) that was not charged."""

    def database_gone(**kwargs):
        raise OperationalError("couldn't get a connection after 10.00 sec")

    monkeypatch.setattr(batches, "hold_settle", database_gone)
    path, body, ended_well, failed = STREAMS[protocol]

    async def call():
        # The whole stream in one event loop, as an ASGI server reads it.
        response = await AsyncClient().post(
            path, json.dumps(body), content_type="application/json", headers={"x-api-key": key},
        )  # fmt: skip
        return response, b"".join([chunk async for chunk in response.streaming_content])

    response, content = async_to_sync(call)()
    assert response.status_code == 200
    text = content.decode()
    assert failed in text and ended_well not in text.replace(" ", ""), text[-600:]
    assert "briefly unavailable" in text
    if protocol == "chat":
        assert text.strip().split("\n\n")[-1] == "data: [DONE]"
    assert not UsageRecord.objects.exists()
    # The hold stays open until beat finds it stale, then goes back to the wallet, free.
    assert Hold.objects.get().status == "open"
    settings.BYTESPIKE_HOLD_STALE_SECONDS = 0
    assert release_stale_holds() == 1
    assert wallet_problems(world.account.pk) == []


def test_a_task_stream_waits_for_the_database_and_goes_on(
    client, world, key, monkeypatch, enqueued
):
    response = client.post(
        "/v1/tasks/submit",
        data=json.dumps({"model": "gpt-image-1", "params": {"prompt": "A fox"}}),
        content_type="application/json",
        headers={"x-api-key": key},
    )
    assert response.status_code == 200
    task = Task.objects.get(public_id=response.json()["task_id"])
    reads = []
    real_read = task_views._read

    def restarting(task_pk, base_url):
        reads.append(task_pk)
        if len(reads) == 1:
            raise OperationalError("the database system is shutting down")
        if len(reads) == 2:  # back, and the task was cancelled meanwhile
            services.task_cancel(Task.objects.get(pk=task_pk))
        return real_read(task_pk, base_url)

    monkeypatch.setattr(task_views, "_read", restarting)
    stream = client.get(f"/v1/tasks/stream/{task.public_id}", headers={"x-api-key": key})
    assert stream.status_code == 200
    body = read_body(stream).decode()
    assert body.startswith(": waiting for the database\n\n")
    assert "event: cancelled" in body
    assert len(reads) == 2
