"""The test world: an owner, a teammate of each lower role, and an outsider with an account."""

import os
import uuid
from dataclasses import dataclass

import pytest
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from accounts.models import Account, Membership, Role, User
from billing.metering import engine, renewals
from console.celery import app as celery_app
from core import db as core_db
from generation import health
from generation.providers.clients import close_clients
from keys import auth as keyauth
from keys import cache as keycache
from tests.factories import AccountFactory, MembershipFactory, UserFactory
from tests.tasks import SandboxClock

# In-process tests never talk to the real broker: a task is run by calling it (or by an
# in-process worker in browser tests). Subprocess tests read the real URL from the environment.
# (CELERY_BROKER_URL in the environment outranks conf.broker_url; the read/write URLs don't.)
celery_app.conf.broker_read_url = celery_app.conf.broker_write_url = "memory://localhost/"
celery_app.conf.broker_transport_options = {}

# No hold-renewal thread in the test process (console.asgi starts one in web processes), no
# attempt-statistics thread (tests flush by hand), and no metering maintenance task (it would
# outlive the event loop of the request that started it).
renewals.renewals_enabled = False
health.flushing_enabled = False
engine.maintenance_enabled = False
keycache.listening_enabled = False
core_db.use_test_thread = True

SERVICES = django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and bool(
    os.environ.get("REDIS_URL")
)


def pytest_collection_modifyitems(config, items):
    """Tests marked `services` need PostgreSQL and Redis; CI sets BYTESPIKE_REQUIRE_SERVICES so
    that a missing service fails instead of skipping."""
    if SERVICES:
        return
    if os.environ.get("BYTESPIKE_REQUIRE_SERVICES"):
        raise pytest.UsageError(
            "BYTESPIKE_REQUIRE_SERVICES is set but DATABASE_URL/REDIS_URL aren't"
        )
    skip = pytest.mark.skip(reason="needs DATABASE_URL (PostgreSQL) and REDIS_URL")
    for item in items:
        if "services" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _upstream_clients_closed():
    """Sync upstream clients live as long as the process, so the session's end closes them
    (async ones close with their event loop)."""
    yield
    close_clients()


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Templates resolve static URLs without a collectstatic manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # A fresh cache namespace per test, without flushing a Redis shared with other workers.
    cache = dict(settings.CACHES["default"])
    cache["KEY_PREFIX"] = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {"default": cache}
    # Row ids repeat between tests (rolled back), so nothing remembered by id may carry over.
    from catalogue.selectors import slugs
    from generation import routing
    from generation.breakers import breakers

    slugs.forget()
    routing.forget()
    breakers.reset()
    health.recorder.forget()
    engine.meter.forget()
    keycache.cache.clear()
    keyauth._noted.clear()


@pytest.fixture
def sandbox_clock(monkeypatch) -> SandboxClock:
    """The media sandbox's clock, in this process, moved by hand (``clock.advance(seconds)``)."""
    from generation.providers import sandbox_media

    clock = SandboxClock()
    monkeypatch.setattr(sandbox_media, "_now", lambda: clock.now)
    return clock


@dataclass
class World:
    owner: User
    account: Account
    admin: User
    developer: User
    viewer: User
    finance: User
    outsider: User
    outsider_account: Account

    def member(self, role: str) -> User:
        return {
            Role.OWNER: self.owner,
            Role.ADMIN: self.admin,
            Role.DEVELOPER: self.developer,
            Role.VIEWER: self.viewer,
            Role.FINANCE: self.finance,
        }[role]

    def membership(self, user: User) -> Membership:
        return Membership.objects.get(user=user, account=self.account)


@pytest.fixture
def keep_test_connection():
    """As Django's test client does: a request must not close the connection that holds the
    test's transaction (Django's WSGI and ASGI handlers close old connections when a request
    starts and ends)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(db) -> World:
    account = AccountFactory(name="Acme")
    members = {}
    for role in Role:
        user = UserFactory(email=f"{role.value}@acme.test")
        MembershipFactory(account=account, user=user, role=role)
        members[role] = user
    outsider_account = AccountFactory(name="Other Co")
    outsider = UserFactory(email="outsider@other.test")
    MembershipFactory(account=outsider_account, user=outsider, role=Role.OWNER)
    return World(
        owner=members[Role.OWNER],
        account=account,
        admin=members[Role.ADMIN],
        developer=members[Role.DEVELOPER],
        viewer=members[Role.VIEWER],
        finance=members[Role.FINANCE],
        outsider=outsider,
        outsider_account=outsider_account,
    )


@pytest.fixture
def client_for(client):
    """A logged-in test client for a user, with their first account selected."""

    def login(user: User):
        client.force_login(user)
        return client

    return login


@dataclass
class Enqueued:
    name: str
    args: tuple
    kwargs: dict


@pytest.fixture
def enqueued(monkeypatch) -> list[Enqueued]:
    """Record what would be published to the broker instead of publishing it.

    Tests then run a recorded task by calling it, as a worker would (``run_enqueued``).
    """
    from celery.app.task import Task

    sent: list[Enqueued] = []

    def record(self, args=None, kwargs=None, **options):
        sent.append(Enqueued(self.name, tuple(args or ()), dict(kwargs or {})))

    monkeypatch.setattr(Task, "apply_async", record)
    return sent


def run_enqueued(jobs: list[Enqueued]) -> list:
    """Run recorded tasks in order and forget them; returns their results."""
    results = []
    while jobs:
        job = jobs.pop(0)
        results.append(celery_app.tasks[job.name](*job.args, **job.kwargs))
    return results


def read_body(response) -> bytes:
    """A response's bytes, whether whole, streamed, or streamed by an async view."""
    if not response.streaming:
        return response.content
    content = response.streaming_content
    if hasattr(content, "__aiter__"):
        from asgiref.sync import async_to_sync

        async def collect():
            return b"".join([chunk async for chunk in content])

        return async_to_sync(collect)()
    return b"".join(content)
