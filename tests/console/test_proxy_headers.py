"""The caller's address, as key IP lists and login limits see it, is the socket's unless
``BYTESPIKE_CLIENT_IP_HEADER`` says to read a proxy's header. uvicorn, by default, believes
X-Forwarded-For from 127.0.0.1; these tests run real uvicorn processes launched as
``manage.py serve`` launches its web child, and as a bare ``uvicorn console.asgi:application``
(README's production line without its flag), and send that header from 127.0.0.1."""

import subprocess
import sys
from types import SimpleNamespace

import httpx
import pytest
from django.conf import settings

from console.management.commands.serve import web_command
from tests.factories import AIModelFactory, RoutingGroupFactory, issue_key
from tests.processes import ROOT, embedded_env, free_port, submit, wait_until

TOO_MANY = "Too many failed login attempts"

LAUNCHES = {
    "serve": lambda port: web_command("127.0.0.1", port),
    "bare-uvicorn": lambda port: [
        sys.executable, "-m", "uvicorn", "console.asgi:application", "--lifespan", "off",
        "--port", str(port),
    ],
}  # fmt: skip


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A data directory with the static files collected (console pages need the manifest)."""
    path = tmp_path_factory.mktemp("web")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT, env=embedded_env(path), check=True,
    )  # fmt: skip
    return path


@pytest.fixture(params=LAUNCHES)
def web(request, data_dir, tmp_path, transactional_db):
    env = embedded_env(
        data_dir,
        DATABASE_URL=_database_url(),
        BYTESPIKE_KEY_PEPPER=settings.BYTESPIKE_KEY_PEPPER,
        BYTESPIKE_HTTPS="0",  # plain HTTP on this machine, as serve sets it for loopback
    )
    port = free_port()
    log = tmp_path / "web.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            LAUNCHES[request.param](port), cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: process.poll() is not None or _answers(base), 120)
    if process.poll() is not None or not _answers(base):
        process.kill()
        raise AssertionError("the web process did not start:\n" + log.read_text()[-3000:])
    yield SimpleNamespace(base=base, launch=request.param)
    process.terminate()
    process.wait(timeout=20)


def test_x_forwarded_for_does_not_move_a_caller_past_key_ip_lists(web, world):
    group = RoutingGroupFactory(slug="default")
    AIModelFactory(slug="gpt-4.1", groups=[group])
    _, ten_only = issue_key(world.account, group, ip_allowlist=["10.0.0.0/8"])
    _, not_loopback = issue_key(world.account, group, ip_denylist=["127.0.0.1/32"])
    _, loopback_only = issue_key(world.account, group, ip_allowlist=["127.0.0.0/8"])

    def status(secret: str, forwarded: str | None = None) -> int:
        headers = {"x-api-key": secret}
        if forwarded:
            headers["x-forwarded-for"] = forwarded
        return httpx.get(f"{web.base}/v1/models", headers=headers, timeout=30).status_code

    assert status(ten_only) == 403
    assert status(ten_only, "10.1.2.3") == 403
    assert status(not_loopback, "8.8.8.8") == 403
    assert status(loopback_only) == 200
    # Started as serve starts it, uvicorn keeps the socket's address; a bare uvicorn has already
    # replaced it by the header's, so the call is refused rather than believed.
    assert status(loopback_only, "10.1.2.3") == (200 if web.launch == "serve" else 403)


def test_x_forwarded_for_does_not_escape_the_per_address_login_limit(web, world):
    # Five wrong passwords for one account from one address close it to that address (5 in 5
    # minutes: a window a loaded machine cannot outrun, unlike the 10 a minute for any account).
    def log_in(n: int) -> httpx.Response:
        with httpx.Client(
            base_url=web.base, timeout=60, headers={"X-Forwarded-For": f"198.51.100.{n}"}
        ) as client:
            data = {"login": "owner@acme.test", "password": "wrong"}
            return submit(client, "/auth/login/", data)

    answers = [log_in(n) for n in range(6)]
    if web.launch == "serve":
        assert all("not correct" in answer.text for answer in answers[:5])
        assert TOO_MANY in answers[5].text
    else:  # the address was lost to the header: no password is tried at all
        assert [answer.status_code for answer in answers] == [403] * 6
