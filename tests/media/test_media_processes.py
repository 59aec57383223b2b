"""Media across machines: two web processes and a Celery worker, each with a data folder of its
own, sharing only PostgreSQL, Redis (cache and broker) and the bucket. A task submitted through
web process A is rendered by the worker into the bucket, and its file is served through web
process B."""

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings

from accounts.models import Role
from generation.models import Task
from tests.factories import MembershipFactory, UserFactory, funded_keys
from tests.processes import ROOT, shared_env, start_web, wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def machines(tmp_path, bucket):
    """Three machines' processes: nothing on disk in common, the secrets from the environment
    (as docs/operations.md asks), the broker in Redis."""
    broker = os.environ.get("CELERY_BROKER_URL") or os.environ["REDIS_URL"]
    common = {
        **bucket.env(),
        "SECRET_KEY": settings.SECRET_KEY,  # signs the file links one process gives another
        "CELERY_BROKER_URL": broker,
        "BYTESPIKE_CELERY_QUEUE": f"media-{uuid.uuid4().hex}",
        "BYTESPIKE_SANDBOX_VIDEO_SECONDS": "1",
        "BYTESPIKE_METRICS_DIR": "",
    }
    folders = {name: tmp_path / name for name in ("web-a", "web-b", "worker")}
    logs = tmp_path / "logs"
    logs.mkdir()
    processes, bases = [], []
    try:
        worker_env = shared_env(folders["worker"], **common)
        worker = [sys.executable, "-m", "celery", "-A", "console", "worker", "--concurrency", "1",
                  "--without-mingle", "--without-gossip", "--loglevel", "WARNING"]  # fmt: skip
        with (logs / "worker.log").open("w") as log:  # the child keeps its own copy
            processes.append(
                subprocess.Popen(
                    worker, cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT
                )
            )
        with ThreadPoolExecutor(2) as pool:  # the two web processes start side by side
            starts = [
                pool.submit(
                    start_web, shared_env(folders[name], **common), log=logs / f"{name}.log"
                )
                for name in ("web-a", "web-b")
            ]
        failures = []
        for start in starts:
            try:
                process, base = start.result()
            except AssertionError as failure:
                failures.append(failure)
                continue
            processes.append(process)
            bases.append(base)
        if failures:
            raise failures[0]
        yield {"bases": bases, "folders": folders, "logs": logs}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_task_rendered_by_the_worker_is_served_by_the_other_web_process(machines, bucket):
    owner = UserFactory()
    account = MembershipFactory(user=owner, role=Role.OWNER).account
    key = funded_keys(account, owner)["gemini-default"]
    web_a, web_b = machines["bases"]
    headers = {"x-api-key": key}

    video = {"model": "veo-3-fast", "params": {"prompt": "A kite [sandbox:seconds=0.5]"}}
    submitted = httpx.post(f"{web_a}/v1/tasks/submit", json=video, headers=headers, timeout=30)
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["task_id"]

    def completed():
        return Task.objects.filter(public_id=task_id, status="completed").exists()

    assert wait_until(completed, 60), (machines["logs"] / "worker.log").read_text()[-3000:]

    query = httpx.get(f"{web_b}/v1/tasks/query", params={"task_id": task_id}, headers=headers)
    (output,) = query.json()["output"]
    assert output["url"].startswith(f"{web_b}/files/") and output["expires_at"]
    (object_key,) = bucket.keys()
    stored = bucket.read(object_key)
    served = httpx.get(output["url"], timeout=30)
    assert served.status_code == 200 and served.headers["content-type"] == "video/mp4"
    assert served.content == stored and stored[4:8] == b"ftyp"
    part = httpx.get(output["url"], headers={"Range": "bytes=4-7"}, timeout=30)
    assert part.status_code == 206 and part.content == b"ftyp"
    # A link web process B made works on A too: the links are signed by the shared SECRET_KEY.
    assert httpx.get(output["url"].replace(web_b, web_a), timeout=30).content == stored

    # Nothing else was shared: each process kept its own folder, and no folder has a file of
    # the task, a broker message or a secret of its own (they came from the environment).
    folders = machines["folders"]
    assert len({folder.resolve() for folder in folders.values()}) == 3
    for folder in folders.values():
        made = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
        assert not [path for path in made if path.startswith(("media/", "broker/"))], made
        assert not made & {"secret_key", "key_pepper", "encryption_key", "bytespike.sqlite3"}
