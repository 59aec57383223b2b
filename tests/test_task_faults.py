"""Task pipeline faults with real processes on PostgreSQL and Redis: a web process and Celery
workers sharing only the database and the broker, as in production."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.conf import settings
from django.utils import timezone
from standardwebhooks import Webhook

from accounts.models import Role
from accounts.webhooks import webhook_secret_for_signing
from billing.invariants import wallet_problems
from billing.models import LedgerEntry, UsageRecord
from generation.models import CallbackDelivery, Task
from tests.factories import MembershipFactory, UserFactory, funded_key
from tests.processes import ROOT, free_port, wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class Cluster:
    """One web process and Celery workers that can be killed and replaced."""

    def __init__(self, tmp_path):
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "BYTESPIKE_DATA_DIR": str(tmp_path),
            "BYTESPIKE_HTTPS": "0",
            "BYTESPIKE_CELERY_QUEUE": f"faults-{uuid.uuid4().hex}",
            "BYTESPIKE_KEY_PEPPER": settings.BYTESPIKE_KEY_PEPPER,
            "BYTESPIKE_ENCRYPTION_KEYS": ",".join(settings.BYTESPIKE_ENCRYPTION_KEYS),
            "BYTESPIKE_TASK_STALE_SECONDS": "3",
            "BYTESPIKE_CALLBACK_ALLOW_HTTP": "1",
            "BYTESPIKE_CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
            "BYTESPIKE_PUBLIC_URL": "http://testserver",
            "PYTHONUNBUFFERED": "1",
        }
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.web = self._spawn(
            "web", "-m", "uvicorn", "console.asgi:application", "--lifespan", "off",
            "--port", str(port),
        )  # fmt: skip
        self.workers = [self.start_worker() for _ in range(2)]
        assert wait_until(self._up, 60), "the web process did not start"

    def _spawn(self, name, *argv):
        log = (self.logs / f"{name}-{time.monotonic_ns()}.log").open("w")
        return subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            process_group=0,
        )  # fmt: skip

    def _up(self) -> bool:
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self):
        return self._spawn(
            "worker", "-m", "celery", "-A", "console", "worker", "--concurrency", "2",
            "--without-mingle", "--without-gossip", "-l", "INFO",
        )  # fmt: skip

    def kill_workers(self):
        for worker in self.workers:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        self.workers = []

    def manage(self, code: str) -> str:
        """Run Python in a fresh process with the cluster's settings (the real broker)."""
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return result.stdout

    def stop(self):
        for process in [self.web, *self.workers]:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path):
    running = Cluster(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def key(transactional_db):
    owner = UserFactory()
    account = MembershipFactory(user=owner, role=Role.OWNER).account
    return funded_key(account, owner, group="gemini-default")[1], account


def submit(cluster, key, prompt, **extra) -> Task:
    response = httpx.post(
        f"{cluster.base}/v1/tasks/submit",
        headers={"x-api-key": key},
        json={"model": "veo-3-fast", "prompt": prompt, "duration": 4, **extra},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return Task.objects.get(public_id=response.json()["task_id"])


def final(task: Task, timeout: float = 60) -> Task:
    def done():
        task.refresh_from_db()
        return task.is_terminal

    assert wait_until(done, timeout, interval=0.3), f"{task.public_id} stuck in {task.status}"
    return task


def billed_once(task: Task, account) -> None:
    assert UsageRecord.objects.filter(request_id=task.public_id).count() == 1
    assert LedgerEntry.objects.filter(reference=task.public_id, kind="charge").count() == 1
    assert wallet_problems(account.pk) == []


def test_a_worker_killed_mid_task_is_replaced_and_the_task_finishes_billed_once(cluster, key):
    secret, account = key
    task = submit(cluster, secret, "A slow lighthouse [sandbox:seconds=6]")
    assert wait_until(lambda: Task.objects.get(pk=task.pk).status == "running", 30)
    cluster.kill_workers()  # SIGKILL: no warm shutdown, messages left unacknowledged
    stale = timedelta(seconds=float(cluster.env["BYTESPIKE_TASK_STALE_SECONDS"]))

    def heartbeat_stale():  # nobody runs the task any more: its heartbeat ages
        return Task.objects.get(pk=task.pk).heartbeat_at < timezone.now() - stale

    assert wait_until(heartbeat_stale, 30, interval=0.1), "the task's heartbeat went on"
    cluster.workers = [cluster.start_worker()]
    # What beat does every 30 s: revive tasks nobody is looking after.
    assert '"revived": 1' in cluster.manage(
        "import json; from generation.jobs import tasks_reap; print(json.dumps(tasks_reap()))"
    )
    task = final(task)
    assert task.status == "completed"
    billed_once(task, account)


def test_duplicate_messages_for_one_task_settle_it_once(cluster, key):
    secret, account = key
    task = submit(cluster, secret, "Twice [sandbox:seconds=1.5]")
    cluster.manage(
        "from generation.jobs import task_advance\n"
        f"for _ in range(4): task_advance.delay({task.pk}, {task.lease!r})"
    )
    task = final(task)
    assert task.status == "completed"
    billed_once(task, account)


def test_an_upstream_failure_releases_the_hold_and_bills_nothing(cluster, key):
    secret, account = key
    task = final(submit(cluster, secret, "Doomed [sandbox:fail] [sandbox:seconds=1]"))
    assert task.status == "failed"
    assert not UsageRecord.objects.filter(request_id=task.public_id).exists()
    assert wallet_problems(account.pk) == []


class Receiver:
    def __init__(self, port: int):
        self.port = port
        self.requests: list[dict] = []
        self.server = None

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def test_a_callback_receiver_down_then_up_gets_the_same_message(cluster, key):
    secret, account = key
    receiver = Receiver(free_port())
    task = final(
        submit(cluster, secret, "Call me [sandbox:seconds=1]",
               callback_url=f"http://127.0.0.1:{receiver.port}/hooks/bytespike")
    )  # fmt: skip
    assert task.status == "completed"
    delivery = CallbackDelivery.objects.get(task=task)
    # The first attempt fails (nobody listening) and is recorded.
    assert wait_until(lambda: delivery.attempt_log.filter(status_code__isnull=True).exists(), 30)
    receiver.start()  # the receiver comes back; the next retry (10 s, +-20%) reaches it
    try:
        assert wait_until(lambda: receiver.requests, 40), "the callback never arrived"
    finally:
        receiver.stop()
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempts >= 2
    (request,) = receiver.requests
    headers = {name.lower(): value for name, value in request["headers"].items()}
    assert headers["webhook-id"] == delivery.webhook_id
    key_bytes = webhook_secret_for_signing(account)
    import base64

    verified = Webhook("whsec_" + base64.b64encode(key_bytes).decode()).verify(
        request["body"], headers
    )
    assert verified["type"] == "task.completed"
    assert verified["data"]["task_id"] == task.public_id
    assert json.loads(request["body"])["data"]["status"] == "completed"
