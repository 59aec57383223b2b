"""A revoke made in one process is refused by another process's data plane within a second,
on the embedded default (per-process cache) and on PostgreSQL with the shared Redis cache."""

import os
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings

from keys import services as keys
from tests.factories import AIModelFactory, RoutingGroupFactory, issue_key
from tests.processes import ROOT, embedded_env, free_port, wait_until


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def web_process(tmp_path, transactional_db):
    env = embedded_env(
        tmp_path,
        DATABASE_URL=_database_url(),
        BYTESPIKE_KEY_PEPPER=settings.BYTESPIKE_KEY_PEPPER,
        BYTESPIKE_CACHE_PREFIX=settings.CACHES["default"].get("KEY_PREFIX", ""),
    )
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "console.asgi:application", "--lifespan", "off",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    assert wait_until(lambda: _answers(base), 30)
    yield base
    process.terminate()
    process.wait(timeout=20)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_another_process_refuses_a_revoked_key_within_a_second(web_process, world):
    group = RoutingGroupFactory(slug="default")
    AIModelFactory(slug="gpt-4.1", groups=[group])
    key, secret = issue_key(world.account, group)
    headers = {"x-api-key": secret}
    for _ in range(3):  # warm the other process's view of the key
        assert httpx.get(f"{web_process}/v1/models", headers=headers).status_code == 200

    keys.api_key_revoke(key=key, actor=world.owner)
    revoked_at = time.monotonic()
    assert wait_until(
        lambda: httpx.get(f"{web_process}/v1/models", headers=headers).status_code == 401,
        timeout=1.0,
        interval=0.05,
    ), "the other process still accepted the revoked key after a second"
    assert time.monotonic() - revoked_at <= 1.2
