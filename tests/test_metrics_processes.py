"""One machine's metrics, whichever process is scraped: two real web processes and a Celery
worker on PostgreSQL and Redis write to one metrics folder, and a scrape of either web process
shows the sum of what all three did."""

import subprocess
import sys

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import Role
from billing.models import UsageRecord
from generation.models import Task
from tests.factories import MembershipFactory, UserFactory, funded_keys
from tests.processes import ROOT, shared_env, start_web, stop_all, wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
TOKEN = "machine-metrics-token-42"
M = 1_000_000


@pytest.fixture
def machine(tmp_path):
    """Two web processes and a worker sharing a data folder (so a metrics folder, and the
    folder broker) and the test's PostgreSQL and Redis."""
    env = shared_env(
        tmp_path,
        BYTESPIKE_METRICS_TOKEN=TOKEN,
        BYTESPIKE_METRICS_DIR=str(tmp_path / "metrics"),
        BYTESPIKE_SANDBOX_VIDEO_SECONDS="1",
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    processes, bases = [], []
    try:
        for name in ("a", "b"):
            process, base = start_web(env, log=logs / f"web-{name}.log")
            processes.append(process)
            bases.append(base)
        worker = [sys.executable, "-m", "celery", "-A", "console", "worker", "--concurrency", "1",
                  "--without-mingle", "--without-gossip", "--loglevel", "WARNING"]  # fmt: skip
        with (logs / "worker.log").open("w") as log:  # the child keeps its own copy
            processes.append(
                subprocess.Popen(worker, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        yield {"bases": bases, "logs": logs}
    finally:
        stop_all(processes)


def scrape(base: str) -> dict:
    response = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text[:500]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_one_scrape_of_either_web_process_sums_the_machine(machine, transactional_db):
    owner = UserFactory()
    account = MembershipFactory(user=owner, role=Role.OWNER).account
    keys = funded_keys(account, owner)
    web_a, web_b = machine["bases"]

    def call(base, key, path, body):
        return httpx.post(f"{base}{path}", json=body, headers={"x-api-key": key}, timeout=30)

    chat = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hello"}]}
    answers = [call(base, keys["default"], "/v1/chat/completions", chat)
               for base in (web_a, web_a, web_a, web_b, web_b)]  # fmt: skip
    assert [a.status_code for a in answers] == [200] * 5
    upstream = answers[0].headers["X-ByteSpike-Upstream"]
    video = {"model": "veo-3-fast", "params": {"prompt": "A fox", "duration": 4}}
    submitted = call(web_b, keys["gemini-default"], "/v1/tasks/submit", video)
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["task_id"]

    def finished():
        task = Task.objects.filter(public_id=task_id).first()
        return task is not None and task.status == "completed"

    assert wait_until(finished, 90), (machine["logs"] / "worker.log").read_text()[-3000:]

    # The worker counts its task's end as it commits; a scrape may come a moment before.
    ended = {"model": "veo-3-fast", "status": "completed"}
    assert wait_until(lambda: value(scrape(web_a), "bytespike_tasks_finished_total", **ended), 10)
    samples = {"a": scrape(web_a), "b": scrape(web_b)}
    for seen in samples.values():
        requests = {"route": "v1-chat-completions", "protocol": "openai", "model": "gpt-4.1"}
        assert value(seen, "bytespike_requests_total", **requests, status="200",
                     upstream=upstream) == 5  # fmt: skip
        assert value(seen, "bytespike_gateway_added_seconds_count",
                     route="v1-chat-completions") == 5  # fmt: skip
        assert value(seen, "bytespike_requests_total", route="v1-tasks-submit", protocol="openai",
                     model="veo-3-fast", status="200", upstream="") == 1  # fmt: skip
        rows = UsageRecord.objects.filter(model__slug="gpt-4.1")
        tokens = {"model": "gpt-4.1", "group": "default"}
        assert value(seen, "bytespike_tokens_total", **tokens, kind="input") == sum(
            r.input_tokens for r in rows
        )
        assert value(seen, "bytespike_settlement_lag_seconds_count") == 5
        # What the worker recorded, in its own (forked) process.
        assert value(seen, "bytespike_tasks_finished_total", **ended) == 1
        assert value(seen, "bytespike_task_queue_wait_seconds_count", model="veo-3-fast") == 1
        task = Task.objects.get(public_id=task_id)
        assert value(seen, "bytespike_credits_total", model="veo-3-fast",
                     group="gemini-default") == pytest.approx(task.credits_used / M)  # fmt: skip
        assert value(seen, "bytespike_tasks", status="pending") == 0
    assert samples["a"] == samples["b"]

    assert httpx.get(f"{web_a}/metrics").status_code == 401
