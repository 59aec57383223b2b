"""The task stream (SSE) on a live gateway, while another process (this test, as a worker)
moves the task along: the first event at once, one per change, keepalives, the terminal event
and the end of the stream, Last-Event-ID, and no database connection held per open stream."""

import json
import threading
import time

import httpx
import pytest
from django.conf import settings
from django.db import connection

from generation import services
from generation.models import Task
from tests.clients.conftest import POOL_MAX
from tests.processes import wait_until
from tests.tasks import run_until_done

pytestmark = pytest.mark.django_db(transaction=True)


def submit(gateway, key, prompt) -> str:
    response = httpx.post(
        f"{gateway}/v1/tasks/submit",
        headers={"x-api-key": key},
        json={"model": "veo-3-fast", "prompt": prompt, "duration": 4},
    )
    assert response.status_code == 200, response.text
    return response.json()["task_id"]


class Reader(threading.Thread):
    """Reads an SSE stream into (seconds since start, event, id, data) tuples."""

    def __init__(self, url: str, key: str, last_event_id: str | None = None):
        super().__init__(daemon=True)
        self.url, self.key, self.last_event_id = url, key, last_event_id
        self.events: list[tuple] = []
        self.comments = 0
        self.keepalives_after_first_event = 0
        self.closed = threading.Event()
        self.started = time.monotonic()

    def run(self):
        headers = {"x-api-key": self.key}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        with httpx.stream("GET", self.url, headers=headers, timeout=30) as response:
            self.status = response.status_code
            self.content_type = response.headers.get("content-type", "")
            event, ident = "message", None
            for line in response.iter_lines():
                if line.startswith(":"):
                    self.comments += 1
                    if line == ": keepalive" and self.events:
                        self.keepalives_after_first_event += 1
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("id: "):
                    ident = line[4:]
                elif line.startswith("data: "):
                    elapsed = time.monotonic() - self.started
                    self.events.append((elapsed, event, ident, json.loads(line[6:])))
                    event = "message"
        self.closed.set()


def on_the_wire(reader: Reader, task: Task) -> None:
    """Wait until the stream has sent the task as it is now (each change is on the wire before
    the worker makes the next)."""

    def sent():
        return str(task.version) in {ident for _, _, ident, _ in reader.events}

    assert task.is_terminal or wait_until(sent, 10, interval=0.02), (
        f"the stream never sent version {task.version} ({task.status})"
    )


def test_a_stream_follows_a_task_to_its_end(gateway, demo, sandbox_clock):
    key = demo["keys"]["gemini-default"]
    task_id = submit(gateway, key, "A comet [sandbox:seconds=1.5]")
    reader = Reader(f"{gateway}/v1/tasks/stream/{task_id}", key)
    reader.start()
    # The first event, then a keepalive (every 0.5 s on this server) while nothing changes.
    assert wait_until(lambda: reader.events and reader.comments, 10, interval=0.02)
    assert reader.events[0][1] == "status"
    assert reader.events[0][0] < 1.0 and reader.events[0][3]["status"] == "pending"
    assert reader.content_type.startswith("text/event-stream")
    # This test is the worker: the upstream job runs on the sandbox's clock, in this process.
    task = run_until_done(
        Task.objects.get(public_id=task_id),
        sandbox_clock,
        step=0.5,
        after_step=lambda task: on_the_wire(reader, task),
    )
    assert task.status == "completed"
    assert reader.closed.wait(10), "the server did not close the stream"
    names = [event for _, event, _, _ in reader.events]
    assert names[-1] == "completed" and "status" in names[1:-1]
    statuses = [data["status"] for _, _, _, data in reader.events]
    assert statuses[0] == "pending" and "running" in statuses
    ids = [int(ident) for _, _, ident, _ in reader.events]
    assert ids[:-1] == sorted(set(ids[:-1]))
    assert reader.events[-1][3]["output"][0]["type"] == "video"

    # Reconnecting with the last id seen: only the terminal event, then the end.
    again = Reader(f"{gateway}/v1/tasks/stream/{task_id}", key, last_event_id=str(ids[-1]))
    again.start()
    assert again.closed.wait(10)
    assert [event for _, event, _, _ in again.events] == ["completed"]


def gateway_connections(gateway) -> int:
    """The connections the gateway under test has open to the test database, whatever they do."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            [gateway.application_name],
        )
        return cursor.fetchone()[0]


def test_open_streams_hold_no_database_connection(gateway, demo):
    """Twice as many open streams as the gateway's pool has connections, all served and all
    still reading their task: a stream that kept its connection would starve the others for
    good (each reads the task around every keepalive). And the pool is the only way in: the
    gateway has no connection besides its pool's."""
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        pytest.skip("connection counting needs PostgreSQL")
    streams = 2 * POOL_MAX
    key = demo["keys"]["gemini-default"]
    task_ids = [submit(gateway, key, f"Stream {n} [sandbox:seconds=60]") for n in range(streams)]
    # The pool's minimum is open and the name matches: the count below isn't vacuous.
    assert 1 <= gateway_connections(gateway) <= POOL_MAX
    readers = [Reader(f"{gateway}/v1/tasks/stream/{t}", key) for t in task_ids]
    for reader in readers:
        reader.start()

    # Each stream has sent its first event, then two keepalives, reading its task in between.
    def all_streaming():
        return all(r.events and r.keepalives_after_first_event >= 2 for r in readers)

    assert wait_until(all_streaming, 30), (
        f"{sum(not r.events for r in readers)} of {streams} streams got no event "
        f"from a pool of {POOL_MAX}"
    )
    # A connection closed a moment ago may still be listed; one kept open stays listed.
    assert wait_until(lambda: gateway_connections(gateway) <= POOL_MAX, 5), (
        f"{gateway_connections(gateway)} connections for {streams} open streams, pool of {POOL_MAX}"
    )
    assert not any(reader.closed.is_set() for reader in readers)

    for task_id in task_ids:
        services.task_cancel(Task.objects.get(public_id=task_id))
    for reader in readers:
        assert reader.closed.wait(10)
        assert reader.events[-1][1] == "cancelled"
