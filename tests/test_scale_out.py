"""Scale-out proof: two web processes and a worker, sharing only PostgreSQL and Redis.

An invitation made through web process A is sent by the worker (through Redis), its delivery is
seen through web process B, and the invitee signs up through B with the emailed link.
"""

import email
import os
import re
import subprocess
import sys
import uuid

import pytest
from django.conf import settings

from accounts.models import Membership, Role
from tests.factories import MembershipFactory, UserFactory
from tests.processes import ROOT, console_login, free_port, stop_all, submit, wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def cluster(tmp_path, settings):
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "BYTESPIKE_DATA_DIR": str(tmp_path),
        "BYTESPIKE_HTTPS": "0",
        "BYTESPIKE_CELERY_QUEUE": f"scale-out-{uuid.uuid4().hex}",
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(tmp_path / "mail"),
        "PYTHONUNBUFFERED": "1",
    }
    # As a deploy would: static files are collected once before the web processes start.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    ports = [free_port(), free_port()]
    uvicorn = [sys.executable, "-m", "uvicorn", "console.asgi:application", "--lifespan", "off"]
    web = [[*uvicorn, "--host", "127.0.0.1", "--port", str(port)] for port in ports]
    worker = [sys.executable, "-m", "celery", "-A", "console", "worker", "--concurrency", "1"]
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = [
        subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=(logs / f"{i}.log").open("w"), stderr=subprocess.STDOUT
        )
        for i, argv in enumerate([*web, worker])
    ]
    import httpx

    bases = [f"http://127.0.0.1:{port}" for port in ports]
    for base in bases:
        assert wait_until(lambda b=base: _up(httpx, b), 60), "web process did not start"
    yield {"bases": bases, "mail": tmp_path / "mail", "logs": logs}
    stop_all(processes)


def _up(httpx, base) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_work_enqueued_through_one_web_process_is_visible_through_the_other(cluster, settings):
    import httpx

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    owner = UserFactory(email="owner@scale.test", password="owner-pass-123")
    MembershipFactory(user=owner, role=Role.OWNER, account__name="Scale Co")
    web_a, web_b = cluster["bases"]

    client_a = console_login(web_a, "owner@scale.test", "owner-pass-123")
    response = submit(client_a, "/team/", {"email": "mate@scale.test", "role": "developer"},
                      action="/team/invitations/")  # fmt: skip
    assert response.status_code == 302

    client_b = console_login(web_b, "owner@scale.test", "owner-pass-123")
    assert wait_until(lambda: 'data-status="sent"' in client_b.get("/team/").text, 45), (
        "the worker did not send the invitation:\n" + (cluster["logs"] / "2.log").read_text()
    )

    (path,) = list(cluster["mail"].iterdir())
    body = email.message_from_string(path.read_text()).get_payload(decode=True).decode()
    link = re.search(r"http://127\.0\.0\.1:\d+(/invitations/\S+/)", body)[1]
    invitee = httpx.Client(base_url=web_b, timeout=10)
    invitee.get(link)
    password = {"password1": "Mate-pass-9876", "password2": "Mate-pass-9876"}
    joined = submit(invitee, "/auth/signup/?email=mate%40scale.test",
                    {"email": "mate@scale.test", **password}, action="/auth/signup/")  # fmt: skip
    assert joined.status_code == 302
    membership = Membership.objects.get(user__email="mate@scale.test")
    assert membership.account.name == "Scale Co" and membership.role == Role.DEVELOPER
