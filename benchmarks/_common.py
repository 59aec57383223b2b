"""What the benchmarks share: a PostgreSQL database of their own, created and dropped; Python run
in ``manage.py shell`` with the benchmark's settings; servers started (the web process with the
README's production flags), waited for and stopped."""

import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
# Redis for the benchmarks' web processes: the cache here, the Celery broker in the next database.
# Away from the test suite's (0 and 1) and the soak's (8 and 9); each run deletes its own keys.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
BROKER_URL = REDIS_URL.rsplit("/", 1)[0] + f"/{int(REDIS_URL.rsplit('/', 1)[1]) + 1}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def bench_env(**extra) -> dict:
    """This environment without the deployment settings a shell may carry (a CI's
    ``DATABASE_URL`` above all), plain HTTP, and ``extra``."""
    drop = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "BYTESPIKE_CACHE_PREFIX",
            "BYTESPIKE_CELERY_QUEUE", "BYTESPIKE_DATA_DIR", "DEBUG")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "BYTESPIKE_HTTPS": "0", **extra}


def redis_forget(prefix: str) -> None:
    """Delete a run's keys (cache entries, broker queue and bindings) from the bench Redis."""
    for url in (REDIS_URL, BROKER_URL):
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"*{prefix}*"):
            client.delete(key)


def database_urls(name: str) -> tuple[str, str]:
    """The server's maintenance database (``BENCH_DATABASE_URL``) and the benchmark's own."""
    admin = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    return admin, urlunparse(urlparse(admin)._replace(path=f"/{name}"))


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fresh_database(admin_url: str, name: str, env: dict) -> None:
    """An empty database ``name`` (dropped first if a run left it), migrated."""
    drop_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    manage(env, "migrate", "-v0")


def manage(env: dict, *argv: str) -> None:
    subprocess.run([sys.executable, "manage.py", *argv], cwd=ROOT, env=env, check=True)


def shell(env: dict, script: str) -> str:
    """Run ``script`` in ``manage.py shell``; the last line it printed."""
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode:
        raise RuntimeError("manage.py shell failed:\n" + result.stderr.strip()[-3000:])
    return result.stdout.strip().splitlines()[-1]


def healthy(port: int, path: str = "/healthz") -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(port: int, timeout: float = 30, *, path: str = "/healthz", process=None) -> bool:
    """True once ``path`` answers 200; False after ``timeout`` or when ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(port, path):
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def start_server(
    argv: list[str], env: dict, port: int, *, path: str = "/healthz", timeout: float = 30, **popen
) -> subprocess.Popen:
    """Start a server process (in a session of its own, so ``stop_server`` ends its children
    too) and wait until ``path`` answers."""
    process = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True, **popen)
    if not wait_healthy(port, timeout, path=path, process=process):
        stop_server(process)
        raise RuntimeError(f"{shlex.join(argv)} did not answer on port {port}")
    return process


def stop_server(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM to the server's process group, SIGKILL if it is still there after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def cpu_seconds(*groups: int) -> float:
    """CPU time (user + system) used so far by the processes of these process groups (each
    server runs in a group of its own): what a server spent, whoever else shares the cores."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended
            continue
        if int(fields[2]) in groups:  # pgrp; utime and stime are the 12th and 13th after ")"
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds(name: str) -> float:
    """CPU time used so far by the PostgreSQL backends connected to database ``name`` (their
    process title names it): the database's share of a call, beside the web process's."""
    total = 0
    marker = f" {name} ".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker not in (proc / "cmdline").read_bytes():
                continue
            fields = (proc / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# uvicorn's fastest event loop and HTTP parser, when installed (uvicorn[standard] brings them).
FAST_FLAGS = [
    word
    for flag, module in (("--loop", "uvloop"), ("--http", "httptools"))
    if importlib.util.find_spec(module)
    for word in (flag, module)
]


def production_web_flags() -> list[str]:
    """The uvicorn flags of the README's production command line, without host and port, plus
    ``--loop uvloop --http httptools`` when those import and the README does not choose."""
    readme = (ROOT / "README.md").read_text()
    line = re.search(r"^uv run uvicorn console\.asgi:application ([^#\n]*)", readme, re.MULTILINE)
    words = shlex.split(line[1]) if line else ["--no-proxy-headers"]
    flags, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("--host", "--port"):
            skip = True
        elif not word.startswith(("--host=", "--port=")):
            flags.append(word)
    for flag, value in zip(FAST_FLAGS[::2], FAST_FLAGS[1::2], strict=True):
        if not any(w == flag or w.startswith(f"{flag}=") for w in flags):
            flags += [flag, value]
    return flags


def web_command(port: int) -> list[str]:
    """A ByteSpike web process as production starts it (README), on 127.0.0.1:``port``."""
    return [sys.executable, "-m", "uvicorn", "console.asgi:application",
            *production_web_flags(), "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
