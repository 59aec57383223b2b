"""`manage.py serve` on a fresh machine: one command brings up web, worker and beat, and takes
them all down again."""

import functools
import os
import signal
import uuid

import httpx
import pytest

from accounts.models import Account
from tests.processes import (
    alive,
    console_login,
    descendants,
    free_port,
    start_serve,
    stop,
    submit,
    wait_until,
)

# A loaded CI machine compiles the first page of a fresh process slowly.
get = functools.partial(httpx.get, timeout=30)


def test_serve_runs_the_whole_product_and_stops_cleanly(tmp_path):
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_1.db"  # a previous run's process
    stale.write_bytes(b"\0" * 8)
    token = "serve-metrics-token"
    process, demo = start_serve(tmp_path, port, BYTESPIKE_METRICS_DIR=str(metrics_dir),
                                BYTESPIKE_METRICS_TOKEN=token)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        children = descendants(process.pid)
        assert len(children) >= 3  # uvicorn, worker (and its pool), beat
        assert get(f"{base}/healthz").json() == {"status": "ok"}
        assert get(f"{base}/readyz").status_code == 200
        login_page = get(f"{base}/auth/login/")
        css = login_page.text.split('rel="stylesheet" href="')[1].split('"')[0]
        assert get(f"{base}{css}").status_code == 200  # collected, hashed, served

        # Access logs print full URLs; a key sent as ?key= must not reach them.
        probe_key = "sk-byts-" + "Q" * 40
        assert get(f"{base}/v1/models?key={probe_key}").status_code == 401

        client = console_login(base, demo["email"], demo["password"])
        dashboard = client.get("/")
        assert dashboard.status_code == 200 and "Demo Labs" in dashboard.text

        # The worker is live: an invitation email goes out through the broker.
        submit(client, "/team/", {"email": "mate@example.com", "role": "viewer"},
               action="/team/invitations/")  # fmt: skip
        assert wait_until(lambda: 'data-status="sent"' in client.get("/team/").text, 30)

        # The machine's metrics start afresh, and its web process serves them.
        assert not stale.exists()
        scraped = get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
        assert scraped.status_code == 200
        requests = "bytespike_requests_total{"
        counted = [line for line in scraped.text.splitlines()
                   if line.startswith(requests) and 'route="v1-models"' in line]  # fmt: skip
        assert len(counted) == 1 and 'status="401"' in counted[0]  # the probe above
    finally:
        code = stop(process, signal.SIGTERM)
    assert code == 0
    assert wait_until(lambda: not any(alive(pid) for pid in children), 10)
    log = "".join(demo["output"])
    assert "GET /v1/models?key=[redacted]" in log
    assert probe_key not in log


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_serve_uses_postgresql_and_redis_when_configured(tmp_path):
    from django.conf import settings

    db = settings.DATABASES["default"]
    services = {
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/"
        f"{db['NAME']}",
        "REDIS_URL": os.environ["REDIS_URL"],
        "CELERY_BROKER_URL": os.environ["CELERY_BROKER_URL"],
        "BYTESPIKE_CELERY_QUEUE": f"serve-{uuid.uuid4().hex}",
    }
    port = free_port()
    process, demo = start_serve(tmp_path, port, **services)
    try:
        assert not (tmp_path / "bytespike.sqlite3").exists()
        client = console_login(f"http://127.0.0.1:{port}", demo["email"], demo["password"])
        assert Account.objects.filter(name="Demo Labs").exists()  # seeded into PostgreSQL
        submit(client, "/team/", {"email": "pg@example.com", "role": "viewer"},
               action="/team/invitations/")  # fmt: skip
        assert wait_until(lambda: 'data-status="sent"' in client.get("/team/").text, 30)
    finally:
        assert stop(process) == 0


def test_serve_children_do_not_outlive_a_killed_parent(tmp_path):
    process, _ = start_serve(tmp_path, free_port())
    children = descendants(process.pid)
    process.kill()
    process.wait()
    assert wait_until(lambda: not any(alive(pid) for pid in children), 30)
