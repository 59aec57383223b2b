"""A task's lines, end to end, by the request id of its submit: the submit's access line, each
transition, the worker's lines, and the callback attempt (whose receiver gets the id too); and
the request id a job carries from the request that published it to the worker that runs it."""

import json
import logging

import pytest
from celery.app.trace import trace_task
from django.utils import timezone

from console.celery import REQUEST_ID_HEADER
from console.celery import app as celery_app
from core import logs
from generation import routing, services
from generation.models import CallbackDelivery, Task
from tests.factories import funded_keys
from tests.logs.conftest import work

pytestmark = pytest.mark.django_db
QUICK = "[sandbox:seconds=0.3]"


@pytest.fixture
def key(world, settings):
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    routing.forget()
    return funded_keys(world.account, world.owner)["gemini-default"]


def call(client, key, path, body):
    return client.post(
        path, json.dumps(body), content_type="application/json", headers={"x-api-key": key}
    )


def submit(client, key, **extra):
    body = {"model": "veo-3-fast", "params": {"prompt": f"{QUICK} A fox", "duration": 4}}
    return call(client, key, "/v1/tasks/submit", {**body, **extra})


def test_every_line_of_a_task_carries_its_submit_request_id(
    client, world, key, receiver, enqueued, sandbox_clock, json_logs,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        submitted = submit(client, key, callback_url=receiver.url)
    assert submitted.status_code == 200
    request_id = submitted["X-Request-ID"]
    task = Task.objects.get(public_id=submitted.json()["task_id"])
    assert task.request_id == request_id

    work(enqueued, sandbox_clock, django_capture_on_commit_callbacks)
    task.refresh_from_db()
    assert task.status == "completed"

    lines = json_logs.lines()
    assert {line.get("request_id") for line in lines} == {request_id}
    access = json_logs.one("request", request_id=request_id)
    assert access["route"] == "v1-tasks-submit" and access["status"] == 200
    assert access["model"] == "veo-3-fast"

    transitions = json_logs.events("task.transition")
    assert [(t["transition"], t["status_from"], t["status_to"]) for t in transitions] == [
        ("submitted", None, "pending"),
        ("started", "pending", "running"),
        ("completed", "running", "completed"),
    ]
    for line in transitions:
        assert line["logger"] == "bytespike.tasks"
        assert line["task_id"] == task.public_id and line["model"] == "veo-3-fast"
        assert line["account_id"] == world.account.public_id
    assert transitions[-1]["credits_micro"] == task.credits_used > 0

    delivery = CallbackDelivery.objects.get(task=task)
    attempt = json_logs.one("callback.attempt")
    assert attempt["logger"] == "bytespike.callbacks"
    assert {name: attempt[name] for name in (
        "webhook_id", "task_id", "account_id", "attempt", "outcome", "status_code", "host",
    )} == {
        "webhook_id": delivery.webhook_id, "task_id": task.public_id,
        "account_id": world.account.public_id, "attempt": 1, "outcome": "delivered",
        "status_code": 200, "host": "127.0.0.1",
    }  # fmt: skip
    assert attempt["duration_ms"] >= 0 and receiver.url not in json_logs.text
    assert [sent.headers["x-request-id"] for sent in receiver.requests] == [request_id]


def test_a_cancel_is_logged_with_the_submit_id_and_names_the_cancelling_request(
    client, key, enqueued, json_logs, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        submitted = submit(client, key)
        task_id = submitted.json()["task_id"]
        cancelled = call(client, key, "/v1/tasks/cancel", {"task_id": task_id})
    assert cancelled.status_code == 200

    line = json_logs.one("task.transition", transition="cancelled")
    assert line["request_id"] == submitted["X-Request-ID"]
    assert line["by_request_id"] == cancelled["X-Request-ID"]
    assert (line["status_from"], line["status_to"], line["credits_micro"]) == (
        "pending", "cancelled", 0,
    )  # fmt: skip


def test_the_reaper_logs_what_it_revives_and_fails_with_each_submit_id(
    client, key, enqueued, json_logs, django_capture_on_commit_callbacks
):
    forgotten = submit(client, key)
    overdue = submit(client, key, params={"prompt": "[sandbox:seconds=3000] A fox", "duration": 4})
    late = Task.objects.get(public_id=overdue.json()["task_id"])
    services.task_advance(late.pk, late.lease)
    past = timezone.now() - timezone.timedelta(hours=2)
    Task.objects.filter(public_id=forgotten.json()["task_id"]).update(heartbeat_at=past)
    Task.objects.filter(pk=late.pk).update(heartbeat_at=past, started_at=past)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.tasks_reap() == {"revived": 1, "failed": 1}

    revived = json_logs.one("task.transition", transition="revived")
    assert revived["request_id"] == forgotten["X-Request-ID"]
    assert (revived["status_from"], revived["status_to"]) == ("pending", "pending")
    failed = json_logs.one("task.transition", transition="failed")
    assert failed["request_id"] == overdue["X-Request-ID"] and failed["task_id"] == late.public_id
    assert (failed["status_from"], failed["status_to"], failed["error"]) == (
        "running", "failed", "timeout",
    )  # fmt: skip
    assert failed["credits_micro"] == 0


def test_a_failed_callback_attempt_says_why_without_its_url(
    client, key, local_callbacks, enqueued, sandbox_clock, json_logs,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    # Nothing listens there: the attempt cannot connect.
    url = "http://127.0.0.1:9/hooks?token=callback-TOKEN-4c2a"
    with django_capture_on_commit_callbacks(execute=True):
        submitted = submit(client, key, callback_url=url)
    # The task's steps, then one attempt (its retry stays recorded).
    deliver = "generation.jobs.callback_deliver_task"
    work(enqueued, sandbox_clock, django_capture_on_commit_callbacks, until=deliver)

    attempt = json_logs.one("callback.attempt")
    assert attempt["request_id"] == submitted["X-Request-ID"]
    assert attempt["outcome"] == "retrying" and attempt["status_code"] is None
    assert attempt["error"].startswith("Could not connect")
    assert "callback-TOKEN-4c2a" not in json_logs.text and "/hooks" not in json_logs.text


@celery_app.task(name="tests.logs.probe")
def probe() -> None:
    logging.getLogger("tests.logs").info("probe ran")


def test_a_job_published_during_a_request_carries_its_id_to_the_worker(json_logs):
    """Through the broker (in memory here) and Celery's own tracer, as a worker runs a job."""
    queue = "tests-logs-probe"
    with logs.bound(request_id="req_PUBLISHER"):
        probe.apply_async(queue=queue)
    with celery_app.connection_for_read() as connection:
        message = connection.SimpleQueue(queue).get(timeout=5)
        message.ack()
    assert message.headers[REQUEST_ID_HEADER] == "req_PUBLISHER"

    trace_task(probe, message.headers["id"], (), {}, request=dict(message.headers), app=celery_app)
    line = next(line for line in json_logs.lines() if line["message"] == "probe ran")
    assert line["request_id"] == "req_PUBLISHER" and line["job"] == "tests.logs.probe"
    assert logs.context() == {}  # forgotten once the job is done
