"""Requests to the production ASGI application (console.asgi), in process.

Django's test client would send a data-plane call through the console's middleware stack; in
production /v1 and /v1beta run on their own middleware-free handler, so the fuzzers call
``console.asgi.application`` itself, the way uvicorn does. A streamed answer is read in the
event loop that opened its upstream, as a server would; ``leave_after`` hangs up after that
many events, as a client that stops reading does (and the only way to end a task's stream while
the task is still working).

Run inside the test's thread (``async_to_sync``): the views' database work then runs on the
test's connection, inside its transaction; the ``keep_test_connection`` fixture keeps Django
from closing that connection when a request starts and ends.
"""

import asyncio
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from asgiref.sync import async_to_sync

from billing.metering import meter
from console.asgi import application

TIMEOUT_SECONDS = 30


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    left_early: bool = False


def request(
    method: str,
    target: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    leave_after: int = 0,
    app=None,
) -> Answer:
    """``target`` is the path and query as sent on the wire (percent-encoded ASCII);
    ``leave_after``: hang up once that many events of a stream came (0: read to the end);
    ``app``: another ASGI application than ``console.asgi.application``."""
    return async_to_sync(_request)(method, target, headers, body, leave_after, app or application)


async def _request(method, target, headers, body, leave_after, app) -> Answer:
    raw_path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        # As uvicorn does: the path percent-decoded, bytes that are not UTF-8 replaced.
        "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
        "raw_path": raw_path.encode("ascii"),
        "query_string": query.encode("ascii"),
        "root_path": "",
        "headers": [
            *([] if any(name == b"host" for name, _ in headers) else [(b"host", b"testserver")]),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    hang_up = asyncio.Event()
    body_sent = False
    answer = Answer(0, {}, b"")
    chunks: list[bytes] = []
    events = 0

    async def receive():
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal events
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in message.get("headers", [])
            }
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            events += chunks[-1].count(b"\n\n")  # a server sends each event whole
            if not message.get("more_body", False):
                hang_up.set()
            elif leave_after and events >= leave_after:
                answer.left_early = True
                hang_up.set()

    try:
        await asyncio.wait_for(app(scope, receive, send), TIMEOUT_SECONDS)
    except TimeoutError:
        raise AssertionError(
            f"{method} {target[:200]} did not finish within {TIMEOUT_SECONDS} s"
        ) from None
    finally:
        hang_up.set()
        # A server's event loop outlives the request; this one ends with it, so first let the
        # metering engine finish a batch the request started (a stream left early settles in
        # a batch it no longer waits for).
        await meter.drained()
    answer.body = b"".join(chunks)
    return answer
