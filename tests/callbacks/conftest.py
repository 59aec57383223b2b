"""Callback test helpers: a local HTTP receiver, a fake resolver, and finished tasks."""

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from generation.models import CallbackDelivery, Task
from tests.factories import AIModelFactory

REAL_GETADDRINFO = socket.getaddrinfo


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before the status line
    drip: float = 0.0  # between body bytes


class Receiver:
    """A callback receiver on 127.0.0.1 that records requests and answers as told.

    ``stop()`` leaves its port closed (connections are refused); ``start()`` listens on the
    same port again, like a receiver that was down and came back.
    """

    def __init__(self):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.requests: list[Received] = []
        self.answers: deque[Answer] = deque()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/bytespike"

    def answer(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def start(self, server_class=ThreadingHTTPServer, wrap=None) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                receiver.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                answer = receiver.answers.popleft() if receiver.answers else Answer()
                time.sleep(answer.delay)  # plays a slow peer, as the test asked
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    if answer.drip:
                        for byte in answer.body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(answer.drip)  # plays a peer that drips its answer
                    else:
                        self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up: that is what some tests want

            def log_message(self, *args):
                pass

        self.server = server_class(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        if wrap is not None:
            self.server.socket = wrap(self.server.socket)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def local_callbacks(settings):
    """Callbacks to plain-HTTP receivers on 127.0.0.1 (local development settings)."""
    settings.BYTESPIKE_CALLBACK_ALLOW_HTTP = True
    settings.BYTESPIKE_CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.BYTESPIKE_CALLBACK_TIMEOUT_SECONDS = 3.0
    return settings


@pytest.fixture
def strict_callbacks(settings):
    """The production rules: https only, no exempt hosts."""
    settings.BYTESPIKE_CALLBACK_ALLOW_HTTP = False
    settings.BYTESPIKE_CALLBACK_ALLOWED_HOSTS = []
    return settings


@pytest.fixture
def receiver(local_callbacks):
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def dns(monkeypatch):
    """A resolver for these tests: names in ``dns.names`` (host -> list of IPs) resolve to
    those; numeric hosts (127.0.0.1, ::1, 2130706433) are parsed as the system parses them;
    any other name does not exist. No test here asks a real name server.
    ``dns.lookups`` lists the names looked up."""

    class FakeDNS:
        def __init__(self):
            self.names: dict[str, list[str]] = {}
            self.lookups: list[str] = []

        def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
            name = host.decode() if isinstance(host, bytes) else host
            if flags & socket.AI_NUMERICHOST or name not in self.names:
                # Parsing a number never asks a name server; an unknown name does not exist.
                flags |= socket.AI_NUMERICHOST
                return REAL_GETADDRINFO(host, port, family, type, proto, flags)
            self.lookups.append(name)
            results = []
            for address in self.names[name]:
                if ":" in address:
                    results.append(
                        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port or 0, 0, 0))
                    )
                else:
                    results.append(
                        (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))
                    )
            return results

    fake = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


@pytest.fixture
def connections(monkeypatch):
    """Every address a TCP connection is opened to (and still opens it)."""
    opened: list[tuple] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        opened.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return opened


@pytest.fixture
def image_model(db):
    return AIModelFactory(slug="image-model", family="image")


def finished_task(account, model, url: str, status: str = "completed") -> Task:
    now = timezone.now()
    return Task.objects.create(
        account=account,
        model=model,
        request_digest="digest",
        params={"prompt": "a lighthouse"},
        status=status,
        progress=100,
        callback_url=url,
        started_at=now,
        completed_at=now,
        credits_used=40_000 if status == "completed" else 0,
    )


def task_data(task: Task) -> dict:
    """A stand-in for the pipeline's task_object(task)."""
    return {
        "task_id": task.public_id,
        "out_task_id": task.out_task_id or None,
        "model": task.model.slug,
        "status": task.status,
        "progress": task.progress,
        "created_at": task.created_at,
        "completed_at": task.completed_at,
        "credits_used": 0.04,
        "output": [],
    }


def make_due(delivery: CallbackDelivery) -> None:
    """As if the wait before the next attempt had passed."""
    CallbackDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    delivery.refresh_from_db()
