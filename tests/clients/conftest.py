"""A real gateway for the official SDKs: uvicorn in its own process, on the test database.

The server lives for the module; each test makes its own account, keys and catalogue rows, so
nothing the server remembers (keys, catalogue) can leak from one test into another.
"""

import uuid

import pytest

from accounts.models import Role
from tests.factories import MembershipFactory, UserFactory, funded_keys
from tests.processes import shared_database_url, shared_env, start_web

# The server's pool: small, so that open task streams can't each keep a connection.
POOL_MAX = 4


class Gateway(str):
    """The server's base URL (a str, for the SDKs) that also knows where its log is and the
    application name its database connections carry (unique to this server)."""

    def __new__(cls, base: str, log, application_name: str):
        gateway = super().__new__(cls, base)
        gateway.log = log
        gateway.application_name = application_name
        return gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, django_db_setup, django_db_blocker):
    # Other xdist workers run gateways of their own at the same time: a name of its own tells
    # this server's connections apart in pg_stat_activity.
    application_name = f"bytespike-test-gateway-{uuid.uuid4().hex[:12]}"
    env = shared_env(
        tmp_path_factory.mktemp("gateway"),
        DATABASE_URL=shared_database_url(application_name),
        BYTESPIKE_SANDBOX_LATENCY_MS="0",
        BYTESPIKE_SANDBOX_TOKEN_DELAY_MS="2",
        BYTESPIKE_SSE_KEEPALIVE_SECONDS="0.5",
        DATABASE_POOL_MIN="1",
        DATABASE_POOL_MAX=str(POOL_MAX),
    )
    log = tmp_path_factory.mktemp("logs") / "gateway.log"
    process, base = start_web(env, log=log)
    yield Gateway(base, log, application_name)
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture
def demo(transactional_db):
    """An account with the demo catalogue, 50 credits and one key per public group."""
    owner = UserFactory()
    account = MembershipFactory(user=owner, role=Role.OWNER).account
    keys = funded_keys(account, owner)
    return {"account": account, "owner": owner, "keys": keys}
