"""``manage.py serve``: the whole product on one machine.

Migrates, collects static files when they changed, seeds the demo account, then runs the ASGI
server (uvicorn), a Celery worker and Celery beat as child processes until Ctrl-C or SIGTERM,
and stops them all. If one child dies, the others are stopped too, so nothing runs half-up.
"""

import contextlib
import ctypes
import hashlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.finders import get_finders
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from console.demo import HISTORY_DAYS, seed_demo

STOP_GRACE_SECONDS = 15
# --no-proxy-headers: uvicorn would otherwise take the client address from X-Forwarded-For for
# any caller on 127.0.0.1 (its default --forwarded-allow-ips), and anyone on this machine could
# pick the address key IP lists and the login limits see. A proxy in front is configured with
# BYTESPIKE_CLIENT_IP_HEADER instead (core.http.client_ip).
UVICORN_FLAGS = ["--lifespan", "on", "--timeout-graceful-shutdown", "10", "--no-proxy-headers"]
# The filesystem broker has no fan-out, so skip the cluster chatter that needs it.
WORKER_FLAGS = ["--without-mingle", "--without-gossip"]


def web_command(host: str, port: int) -> list[str]:
    """The web child's command line: uvicorn serving the ASGI application."""
    return [sys.executable, "-m", "uvicorn", "console.asgi:application", *UVICORN_FLAGS,
            "--host", host, "--port", str(port)]  # fmt: skip


def _die_with_parent() -> None:
    """In the child: get SIGTERM if `serve` itself dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _clear_metrics() -> None:
    """Start the machine's metrics afresh: the files of processes from a previous run would
    otherwise pile up, to be read by every scrape (docs/operations.md#metrics)."""
    if settings.BYTESPIKE_METRICS_DIR:
        for path in Path(settings.BYTESPIKE_METRICS_DIR).glob("*.db"):
            path.unlink()


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, env: dict) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            self.argv, env=env, preexec_fn=_die_with_parent, process_group=0
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the child's whole process group (a worker's pool processes included)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


def _static_fingerprint() -> str:
    digest = hashlib.sha256()
    for finder in get_finders():
        for path, storage in finder.list([]):
            stat = os.stat(storage.path(path))
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _wait_for_port(host: str, port: int, child: Child, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    connect_host = "127.0.0.1" if host in {"0.0.0.0", "::"} else host  # noqa: S104
    while time.monotonic() < deadline and child.alive:
        try:
            with socket.create_connection((connect_host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


class Command(BaseCommand):
    help = "Run ByteSpike on this machine: web server, Celery worker and Celery beat."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
        parser.add_argument("--port", type=int, default=8000, help="Port to listen on.")
        parser.add_argument(
            "--concurrency", type=int, default=2, help="Celery worker processes (default 2)."
        )

    def handle(self, *args, host, port, concurrency, **options):
        self.stdout.write("Applying database migrations...")
        call_command("migrate", interactive=False, verbosity=0)
        self._collect_static_if_changed()
        # Two weeks of usage, so the dashboard and reports have something to show at once.
        demo = seed_demo(issue_keys=False, history_days=HISTORY_DAYS)

        env = os.environ.copy()
        if _is_loopback(host) and "BYTESPIKE_HTTPS" not in env:
            # Plain HTTP on this machine only: cookies without Secure, no redirect to https.
            env["BYTESPIKE_HTTPS"] = "0"
        url_host = f"[{host}]" if ":" in host else host
        # Workers build links (callbacks, emails) without a request to read the address from.
        env.setdefault("BYTESPIKE_PUBLIC_URL", f"http://{url_host}:{port}")
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "console", "--quiet"]
        schedule = str(settings.DATA_DIR / "celerybeat-schedule")
        children = [
            Child("web", web_command(host, port)),
            Child("worker", [*celery, "worker", "--loglevel", "INFO", *WORKER_FLAGS,
                             "--concurrency", str(concurrency)]),
            Child("beat", [*celery, "beat", "--loglevel", "INFO", "--schedule", schedule]),
        ]  # fmt: skip

        _clear_metrics()
        stopping = []
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        for child in children:
            child.start(env)

        web = children[0]
        if _wait_for_port(host, port, web):
            self.stdout.write(
                self.style.SUCCESS(f"\nByteSpike is running at http://{url_host}:{port}/\n")
                + f"  Log in as {demo['email']} with password {demo['password']}\n"
                + "  Press Ctrl-C to stop.\n"
            )
        exit_code = self._supervise(children, stopping)
        if exit_code:
            raise CommandError("A ByteSpike process stopped unexpectedly; see the log above.")

    def _supervise(self, children: list[Child], stopping: list) -> int:
        failed = 0
        while not stopping:
            dead = [child for child in children if not child.alive]
            if dead:
                for child in dead:
                    self.stderr.write(
                        f"The {child.name} process exited ({child.process.returncode})."
                    )
                failed = 1
                break
            time.sleep(0.3)
        self.stdout.write("Stopping ByteSpike...")
        for child in children:
            child.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while any(child.alive for child in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        for child in children:
            child.kill()
        for child in children:
            if child.process is not None:
                child.process.wait()
        self.stdout.write("Stopped.")
        return failed

    def _collect_static_if_changed(self) -> None:
        marker = settings.STATIC_ROOT / ".fingerprint"
        fingerprint = _static_fingerprint()
        manifest = settings.STATIC_ROOT / "staticfiles.json"
        if manifest.exists() and marker.exists() and marker.read_text() == fingerprint:
            return
        self.stdout.write("Collecting static files...")
        call_command("collectstatic", interactive=False, verbosity=0, clear=True)
        marker.write_text(fingerprint)
