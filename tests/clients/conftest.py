"""A real gateway for the official SDKs: uvicorn in its own process, on the test database.

The server lives for the module; each test makes its own account, keys and catalogue rows, so
nothing the server remembers (keys, catalogue) can leak from one test into another.
"""

import os
import subprocess
import sys

import httpx
import pytest
from django.conf import settings

from accounts.models import Role
from generation.demo_catalogue import seed_catalogue
from tests.factories import MembershipFactory, UserFactory, fund, issue_key
from tests.processes import ROOT, embedded_env, free_port, wait_until

GATEWAY_APPLICATION = "bytespike-test-gateway"


class Gateway(str):
    """The server's base URL (a str, for the SDKs) that also knows where its log is."""

    def __new__(cls, base: str, log):
        gateway = super().__new__(cls, base)
        gateway.log = log
        return gateway


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        f"?application_name={GATEWAY_APPLICATION}"
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, django_db_setup, django_db_blocker):
    env = embedded_env(
        tmp_path_factory.mktemp("gateway"),
        DATABASE_URL=_database_url(),
        BYTESPIKE_KEY_PEPPER=settings.BYTESPIKE_KEY_PEPPER,
        BYTESPIKE_ENCRYPTION_KEYS=",".join(settings.BYTESPIKE_ENCRYPTION_KEYS),
        BYTESPIKE_SANDBOX_LATENCY_MS="0",
        BYTESPIKE_SANDBOX_TOKEN_DELAY_MS="2",
        BYTESPIKE_SSE_KEEPALIVE_SECONDS="0.5",
        # A small pool: open task streams must not each keep a connection.
        DATABASE_POOL_MIN="1",
        DATABASE_POOL_MAX="4",
        BYTESPIKE_PUBLIC_URL="http://testserver",
    )
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "gateway.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "console.asgi:application", "--lifespan", "off",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_until(up, 30), "the gateway did not start"
    yield Gateway(base, log)
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture
def demo(transactional_db):
    """An account with the demo catalogue, 50 credits and one key per public group."""
    groups = seed_catalogue()
    owner = UserFactory()
    account = MembershipFactory(user=owner, role=Role.OWNER).account
    fund(account, 50)
    keys = {
        slug: issue_key(account, groups[slug], actor=owner)[1]
        for slug in ("claude-default", "gemini-default", "default")
    }
    return {"account": account, "owner": owner, "keys": keys, "groups": groups}
