"""Log test helpers: every line logged during a test, as the json (or text) format renders it."""

import io
import json
import logging

import pytest

from console.logfilters import RedactSecrets
from core import logs

# The callback tests' local receiver (and the local-development callback settings it needs).
from tests.callbacks.conftest import local_callbacks, receiver  # noqa: F401
from tests.conftest import run_enqueued


class Captured:
    """What the process's handler would have written: the same formatter and filter, into a
    string. ``lines()`` parses the json format (every line must be one JSON object)."""

    def __init__(self, fmt: str):
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(logs.formatter(fmt))
        self.handler.addFilter(RedactSecrets())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines()]

    def events(self, event: str, **fields) -> list[dict]:
        """The lines of ``event`` (``request``, ``task.transition``...) with these fields."""
        return [
            line
            for line in self.lines()
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
        ]

    def one(self, event: str, **fields) -> dict:
        found = self.events(event, **fields)
        assert len(found) == 1, (event, fields, self.text[-3000:])
        return found[0]


def _capture(fmt: str):
    captured = Captured(fmt)
    root = logging.getLogger()
    level = root.level
    root.addHandler(captured.handler)
    root.setLevel(logging.INFO)  # whatever LOG_LEVEL says
    logs.clear()
    try:
        yield captured
    finally:
        root.removeHandler(captured.handler)
        root.setLevel(level)
        logs.clear()


@pytest.fixture
def json_logs():
    """Every line logged at INFO and above during the test, in the json format."""
    yield from _capture("json")


@pytest.fixture
def text_logs():
    """The same, in the text format (the default)."""
    yield from _capture("text")


def work(enqueued, clock, capture, *, until=None) -> None:
    """Run the recorded jobs as a worker would (called directly, what they commit run), the
    sandbox's clock moving on between them, until none is left (or one named ``until`` ran)."""
    for _ in range(100):
        if not enqueued:
            return
        job = enqueued.pop(0)
        with capture(execute=True):
            run_enqueued([job])
        clock.advance(1)
        if job.name == until:
            return
    raise AssertionError("the jobs did not finish")
