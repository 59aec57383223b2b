"""Async tasks through the API and the worker's steps (run directly, as a worker would)."""

import json

import pytest
from django.utils import timezone

from billing.invariants import wallet_problems
from billing.models import Hold, UsageRecord, Wallet
from catalogue.models import AIModel
from generation import services
from generation.models import Task
from tests.conftest import read_body
from tests.factories import funded_key, funded_keys
from tests.tasks import run_until_done

pytestmark = pytest.mark.django_db
M = 1_000_000
QUICK = "[sandbox:seconds=0.3]"


@pytest.fixture
def keys(world, settings):
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    return funded_keys(world.account, world.owner)


def call(client, key, path, body=None, method="post", **headers):
    if method == "get":
        return client.get(path, headers={"x-api-key": key, **headers})
    return client.post(
        path,
        data=body if isinstance(body, bytes | str) else json.dumps(body or {}),
        content_type="application/json",
        headers={"x-api-key": key, **headers},
    )


def submit(client, key, prompt="A fox in the snow", out_task_id=None, **extra):
    body = {"model": "veo-3-fast", "params": {"prompt": prompt, "duration": 4, **extra}}
    if out_task_id:
        body["out_task_id"] = out_task_id
    return call(client, key, "/v1/tasks/submit", body)


def books(world):
    assert wallet_problems(world.account.pk) == []


def test_submit_holds_the_estimate_and_enqueues_on_commit(
    client, world, keys, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(client, keys["gemini-default"])
    assert response.status_code == 200
    task = response.json()
    assert task["task_id"].startswith("task_") and len(task["task_id"]) == 31
    assert task["status"] == "pending" and task["progress"] == 0
    model = AIModel.objects.get(slug="veo-3-fast")
    estimate = 4 * model.video_price_per_second + model.video_submit_fee
    assert task["estimated_credits"] == estimate / M
    assert task["estimated_seconds"] == model.estimated_seconds
    assert task["credits_used"] is None and task["output"] == [] and task["error"] is None
    assert Wallet.objects.get(account=world.account).held == estimate
    assert [job.name for job in enqueued] == ["generation.jobs.task_advance"]
    assert "X-Org-Quota-Remaining-Credits" in response.headers


def test_params_may_be_given_at_the_top_level(client, keys):
    response = call(
        client, keys["gemini-default"], "/v1/tasks/submit",
        {"model": "veo-3-fast", "prompt": "Waves", "duration": 6, "aspect_ratio": "9:16"},
    )  # fmt: skip
    assert response.status_code == 200
    task = Task.objects.get(public_id=response.json()["task_id"])
    assert task.params == {"prompt": "Waves", "duration": 6, "aspect_ratio": "9:16"}


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "gemini-2.5-pro", "params": {"prompt": "x"}}, 400, "model"),
        ({"model": "veo-3-fast", "params": {"prompt": "x", "fps": 60}}, 400, "params.fps"),
        ({"model": "veo-3-fast", "params": {"prompt": "x", "duration": 7}}, 400, "params.duration"),
        ({"model": "veo-3-fast", "params": {"duration": 4}}, 400, "params.prompt"),
        ({"model": "veo-3-fast", "params": {"prompt": "x", "aspect_ratio": "4:3"}},
         400, "params.aspect_ratio"),
        ({"params": {"prompt": "x"}}, 400, "model"),
        ({"model": "veo-3-fast", "params": "prompt"}, 400, "params"),
        ({"model": "veo-3-fast", "params": {"prompt": "x"}, "callback_url": "http://example.com/h"},
         400, "callback_url"),
        ({"model": "veo-3-fast", "params": {"prompt": "x"}, "callback_url": "https://127.0.0.1/h"},
         400, "callback_url"),
        ({"model": "gpt-4.1-nope", "params": {"prompt": "x"}}, 400, "model"),
    ],
)  # fmt: skip
def test_bad_submissions_are_refused_and_hold_nothing(client, world, keys, body, status, param):
    response = call(client, keys["gemini-default"], "/v1/tasks/submit", body)
    assert response.status_code == status, response.json()
    assert response.json()["error"]["param"] == param
    assert not Task.objects.exists() and not Hold.objects.exists()


def test_oversized_and_malformed_bodies(client, keys):
    big = json.dumps({"model": "veo-3-fast", "params": {"prompt": "x" * (1024 * 1024)}})
    assert call(client, keys["gemini-default"], "/v1/tasks/submit", big).status_code == 413
    assert call(client, keys["gemini-default"], "/v1/tasks/submit", b"{oops").status_code == 400
    deep = b"[" * 100_000 + b"]" * 100_000  # too deep for json.loads: was a 500
    for path in ("/v1/tasks/submit", "/v1/tasks/query", "/v1/tasks/cancel"):
        assert call(client, keys["gemini-default"], path, deep).status_code == 400
    assert not Hold.objects.exists()


def test_a_nul_character_is_refused_not_taken_for_an_outage(client, keys):
    # Found by fuzzing on PostgreSQL, which takes no NUL in text: these were 503 "briefly
    # unavailable" (its DataError is a DatabaseError). SQLite stores NUL: there, they are a 404
    # and a new task.
    key = keys["gemini-default"]
    prompt = {"model": "veo-3-fast", "params": {"prompt": "a\x00b", "duration": 4}}
    for response in (
        call(client, key, "/v1/tasks/query?task_id=task_%00", method="get"),
        call(client, key, "/v1/tasks/stream/task_%00", method="get"),
        call(client, key, "/v1/tasks/cancel", {"out_task_id": "job\x00"}),
        call(client, key, "/v1/tasks/submit", prompt),
    ):
        assert response.status_code in (200, 400, 404), response.content
        if response.status_code == 400:
            assert response.json()["error"]["code"] == "invalid_param"


def test_a_model_outside_the_group_is_403(client, keys):
    response = call(
        client, keys["default"], "/v1/tasks/submit", {"model": "veo-3-fast", "prompt": "x"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_in_group"


def test_out_task_id_is_idempotent_per_request(client, world, keys):
    first = submit(client, keys["gemini-default"], out_task_id="job-1")
    again = submit(client, keys["gemini-default"], out_task_id="job-1")
    assert first.status_code == again.status_code == 200
    assert first.json()["task_id"] == again.json()["task_id"]
    assert Hold.objects.count() == 1
    different = submit(client, keys["gemini-default"], "Another prompt", out_task_id="job-1")
    assert different.status_code == 409
    assert different.json()["error"]["code"] == "duplicate_out_task_id"
    assert Task.objects.count() == 1


def test_query_by_either_id_and_only_within_the_account(client, world, keys):
    task_id = submit(client, keys["gemini-default"], out_task_id="mine").json()["task_id"]
    key = keys["gemini-default"]
    by_id = call(client, key, "/v1/tasks/query", {"task_id": task_id})
    by_out = call(client, key, "/v1/tasks/query", {"out_task_id": "mine"})
    by_get = call(client, key, f"/v1/tasks/query?task_id={task_id}", method="get")
    assert by_id.json() == by_out.json() == by_get.json()
    assert by_id.json()["out_task_id"] == "mine"
    both = call(client, key, "/v1/tasks/query", {"task_id": task_id, "out_task_id": "mine"})
    assert both.status_code == 400
    assert call(client, key, "/v1/tasks/query", {}).status_code == 400
    _, other = funded_key(world.outsider_account, group="gemini-default", credits=5)
    foreign = call(client, other, "/v1/tasks/query", {"task_id": task_id})
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "task_not_found"
    assert call(client, other, f"/v1/tasks/cancel/{task_id}").status_code == 404
    assert call(client, other, f"/v1/tasks/stream/{task_id}", method="get").status_code == 404


def test_a_video_task_runs_to_completion_and_is_billed_once(client, world, keys, sandbox_clock):
    task_id = submit(client, keys["gemini-default"], f"A lighthouse {QUICK}").json()["task_id"]
    task = run_until_done(Task.objects.get(public_id=task_id), sandbox_clock)
    assert task.status == "completed" and task.progress == 100
    body = call(client, keys["gemini-default"], "/v1/tasks/query", {"task_id": task_id}).json()
    (video,) = body["output"]
    assert video["type"] == "video" and video["mime_type"] == "video/mp4"
    assert video["duration_seconds"] == pytest.approx(4, abs=0.3)
    assert body["credits_used"] == body["estimated_credits"]
    assert body["completed_at"] and body["started_at"]
    record = UsageRecord.objects.get(request_id=task_id)
    assert record.seconds == 4 and record.protocol == "tasks" and record.family == "video"
    # The worker running again changes nothing.
    services.task_advance(task.pk, task.lease)
    assert UsageRecord.objects.count() == 1
    books(world)
    # The output URL serves the file, with ranges (so <video> can seek).
    path = video["url"].removeprefix("http://testserver")
    whole = client.get(path)
    assert whole.status_code == 200 and whole["Content-Type"] == "video/mp4"
    assert read_body(whole)[4:8] == b"ftyp"
    part = client.get(path, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part["Content-Range"].startswith("bytes 0-99/")
    assert len(read_body(part)) == 100
    assert client.get(path, headers={"Range": "bytes=999999999-"}).status_code == 416
    assert client.get(path[:-3] + "xyz").status_code == 404  # a forged signature


def test_an_upstream_failure_fails_the_task_for_free(client, world, keys, sandbox_clock):
    task_id = submit(client, keys["gemini-default"], f"[sandbox:fail] {QUICK}").json()["task_id"]
    task = run_until_done(Task.objects.get(public_id=task_id), sandbox_clock)
    assert task.status == "failed" and task.error["code"] == "video_generation_failed"
    assert task.credits_used == 0
    assert Hold.objects.get(reference=task_id).status == "released"
    assert not UsageRecord.objects.exists()
    # A poll shows the error object and the times as the task object does everywhere.
    body = call(client, keys["gemini-default"], "/v1/tasks/query", {"task_id": task_id}).json()
    assert body["status"] == "failed" and body["error"] == task.error
    assert body["completed_at"] == task.completed_at.isoformat().replace("+00:00", "Z")
    assert body["model"] == "veo-3-fast" and body["credits_used"] == 0
    books(world)


def test_cancelling_a_pending_task_is_free_and_idempotent(client, world, keys):
    task_id = submit(client, keys["gemini-default"]).json()["task_id"]
    response = call(client, keys["gemini-default"], f"/v1/tasks/cancel/{task_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled" and response.json()["credits_used"] == 0
    again = call(client, keys["gemini-default"], "/v1/tasks/cancel", {"task_id": task_id})
    assert again.status_code == 200 and again.json() == response.json()
    assert Wallet.objects.get(account=world.account).held == 0
    books(world)


def test_cancelling_a_running_task_bills_by_the_refund_policy(client, world, keys):
    AIModel.objects.filter(slug="veo-3-fast").update(cancel_refund_policy="prorated")
    task_id = submit(client, keys["gemini-default"], "[sandbox:seconds=30]").json()["task_id"]
    task = Task.objects.get(public_id=task_id)
    services.task_advance(task.pk, task.lease)  # claim and submit upstream
    Task.objects.filter(pk=task.pk).update(progress=40)
    response = call(client, keys["gemini-default"], f"/v1/tasks/cancel/{task_id}")
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["credits_used"] == pytest.approx(body["estimated_credits"] * 0.4)
    assert UsageRecord.objects.get(request_id=task_id).credits == round(
        task.estimated_credits * 0.4
    )
    books(world)


def test_a_cancelled_task_is_billed_before_its_upstream_job_is_stopped(
    client, world, keys, monkeypatch
):
    """Issue 11: cancel stopped the upstream job before its compare-and-set, so a worker polling
    in between saw the job gone and failed the task, free, whatever the refund policy said."""
    AIModel.objects.filter(slug="veo-3-fast").update(cancel_refund_policy="none")
    task_id = submit(client, keys["gemini-default"], "[sandbox:seconds=30]").json()["task_id"]
    task = Task.objects.get(public_id=task_id)
    services.task_advance(task.pk, task.lease)  # claim and submit upstream
    seen = []

    def cancel_upstream(route, upstream_id):
        # Whatever a worker sees from now on, the cancellation and its charge already stand.
        seen.append(Task.objects.values_list("status", "credits_used").get(pk=task.pk))
        return True

    monkeypatch.setattr(services.media, "video_cancel", cancel_upstream)
    response = call(client, keys["gemini-default"], f"/v1/tasks/cancel/{task_id}")
    assert response.json()["status"] == "cancelled"
    assert seen == [("cancelled", task.estimated_credits)]
    books(world)


def test_cancel_racing_completion_has_one_outcome(client, world, keys, sandbox_clock):
    task_id = submit(client, keys["gemini-default"], QUICK).json()["task_id"]
    task = Task.objects.get(public_id=task_id)
    services.task_advance(task.pk, task.lease)
    sandbox_clock.advance(0.4)  # the upstream job is done: the worker's next step would finish it
    task.refresh_from_db()
    cancelled = services.task_cancel(task)  # wins: the worker's completion must then be a no-op
    services.task_advance(task.pk, task.lease)
    task.refresh_from_db()
    assert task.status == cancelled.status == "cancelled"
    assert not task.artifacts.exists()
    assert UsageRecord.objects.filter(request_id=task_id).count() <= 1
    books(world)


def test_a_message_of_a_replaced_chain_does_nothing(client, keys):
    task_id = submit(client, keys["gemini-default"]).json()["task_id"]
    task = Task.objects.get(public_id=task_id)
    assert services.task_advance(task.pk, "not-the-lease") is None
    task.refresh_from_db()
    assert task.status == "pending"


def test_two_workers_handed_the_same_message_start_it_once(client, keys):
    task_id = submit(client, keys["gemini-default"], "[sandbox:seconds=30]").json()["task_id"]
    task = Task.objects.get(public_id=task_id)
    services.task_advance(task.pk, task.lease)
    services.task_advance(task.pk, task.lease)
    task.refresh_from_db()
    assert task.status == "running" and task.upstream_id and task.version == 2


def test_the_reaper_revives_forgotten_tasks_and_fails_overdue_ones(
    client, world, keys, enqueued, django_capture_on_commit_callbacks
):
    forgotten = submit(client, keys["gemini-default"]).json()["task_id"]
    overdue = submit(client, keys["gemini-default"], "[sandbox:seconds=3000]").json()["task_id"]
    late = Task.objects.get(public_id=overdue)
    services.task_advance(late.pk, late.lease)
    past = timezone.now() - timezone.timedelta(hours=2)
    Task.objects.filter(public_id=forgotten).update(heartbeat_at=past)
    Task.objects.filter(public_id=overdue).update(heartbeat_at=past, started_at=past)
    enqueued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.tasks_reap() == {"revived": 1, "failed": 1}
    revived = Task.objects.get(public_id=forgotten)
    assert [(job.args[0], job.args[1]) for job in enqueued] == [(revived.pk, revived.lease)]
    failed = Task.objects.get(public_id=overdue)
    assert failed.status == "failed" and failed.error["code"] == "timeout"
    assert Hold.objects.get(reference=overdue).status == "released"
    books(world)


def test_an_async_image_task(client, world, keys, sandbox_clock):
    response = call(
        client, keys["gemini-default"], "/v1/tasks/submit",
        {"model": "imagen-4", "params": {"prompt": "A red kite", "n": 2, "size": "1024x1024"}},
    )  # fmt: skip
    assert response.status_code == 200
    task = run_until_done(Task.objects.get(public_id=response.json()["task_id"]), sandbox_clock)
    assert task.status == "completed" and task.artifacts.count() == 2
    assert UsageRecord.objects.get(request_id=task.public_id).images == 2
    books(world)
