"""What the benchmarks share: a PostgreSQL database of their own, created and dropped; Python run
in ``manage.py shell`` with the benchmark's settings; servers started and waited for."""

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent


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
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(port: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(port):
            return True
        time.sleep(0.2)
    return False


def start_server(argv: list[str], env: dict, port: int, **popen) -> subprocess.Popen:
    """Start a server process and wait until its /healthz answers."""
    process = subprocess.Popen(argv, cwd=ROOT, env=env, **popen)
    if not wait_healthy(port):
        process.kill()
        raise RuntimeError(f"{argv} did not start")
    return process
