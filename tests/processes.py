"""Helpers for tests that run ByteSpike's real processes."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_env(data_dir: Path, **extra) -> dict:
    """The environment of a fresh machine: no services, everything under ``data_dir``."""
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARS}
    env.update(BYTESPIKE_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", **extra)
    return env


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead but not yet reaped
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout: float, interval: float = 0.2):
    """Poll ``predicate`` every ``interval`` seconds until it is true or ``timeout`` seconds have
    passed; returns its last value (falsy on timeout). For what another thread or process
    does: a test waits for the condition, not for a guess at how long it takes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def start_serve(data_dir: Path, port: int, **env) -> tuple[subprocess.Popen, dict]:
    """Run `manage.py serve` and wait for its banner; returns the process and demo login."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--concurrency", "1"],
        cwd=ROOT,
        env=embedded_env(data_dir, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    banner = threading.Event()

    def drain():  # keep reading, or the children block on a full pipe
        for line in process.stdout:
            output.append(line)
            if "Log in as" in line:
                banner.set()

    threading.Thread(target=drain, daemon=True).start()
    if not banner.wait(120):
        process.kill()
        raise AssertionError("serve did not start:\n" + "".join(output))
    match = re.search(r"Log in as (\S+) with password (\S+)", "".join(output))
    return process, {"email": match[1], "password": match[2], "output": output}


def stop(process: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 40) -> int:
    process.send_signal(sig)
    return process.wait(timeout=timeout)


def stop_all(processes) -> None:
    """Stop processes the way a deploy does (SIGTERM, all at once so their shutdowns overlap),
    and kill any that has not stopped 20 s later."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def submit(client: httpx.Client, page: str, data: dict, action: str | None = None):
    """Post a console form as a browser would: the page's CSRF token and a same-origin Referer."""
    html = client.get(page).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)[1]
    return client.post(
        action or page,
        data={**data, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{client.base_url}{page}"},
    )


def console_login(base_url: str, email: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=30)
    response = submit(client, "/auth/login/", {"login": email, "password": password})
    assert response.status_code == 302, response.text[:500]
    return client


def shared_database_url(application_name: str = "") -> str:
    """The test database's URL, for a real process to share it with the test."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return f"{url}?application_name={application_name}" if application_name else url


def shared_env(data_dir: Path, **extra) -> dict:
    """The environment of a process that shares the test database, secrets and cache."""
    from django.conf import settings

    env = embedded_env(
        data_dir,
        DATABASE_URL=shared_database_url(),
        BYTESPIKE_KEY_PEPPER=settings.BYTESPIKE_KEY_PEPPER,
        BYTESPIKE_ENCRYPTION_KEYS=",".join(settings.BYTESPIKE_ENCRYPTION_KEYS),
        BYTESPIKE_CACHE_PREFIX=settings.CACHES["default"].get("KEY_PREFIX", ""),
        BYTESPIKE_PUBLIC_URL="http://testserver",
    )
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    return {**env, **extra}


def start_web(env: dict, *, log: Path, log_level: str = "warning") -> tuple[subprocess.Popen, str]:
    """One uvicorn web process in ``env``, as a deploy runs it; returns the process and its base
    URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "console.asgi:application", "--lifespan", "on",
         "--port", str(port), "--log-level", log_level],
        cwd=ROOT, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None  # died: stop waiting

    if not wait_until(up, 60) or process.poll() is not None:
        process.kill()  # or it outlives the run, holding connections to the test database
        process.wait(timeout=20)
        raise AssertionError(f"the web process did not start:\n{log.read_text()[-3000:]}")
    return process, base
