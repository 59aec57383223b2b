"""ASGI entry point: ``uvicorn console.asgi:application``.

Two Django handlers share one URL map. The data plane (/v1, /v1beta), which apps call with an
inference key, runs without middleware: Django's middleware are synchronous at heart (each one
would move every call through a thread twice), and none of them does anything for an API call
(sessions, CSRF, messages, auth and the console's security headers are the console's). The
console, the management API and the admin run through the full middleware stack.

The client address Django sees (``REMOTE_ADDR``) is the socket's, never a header's: uvicorn, unless
started with ``--no-proxy-headers`` (as ``manage.py serve`` does), replaces the scope's client with
an X-Forwarded-For entry for callers on 127.0.0.1 and ::1, which would let anyone on the machine
pick the address that key IP lists and login limits see. A proxy in front is configured with
``BYTESPIKE_CLIENT_IP_HEADER`` instead (``core.http.client_ip``).
"""

import asyncio
import logging
import os
from contextlib import closing

from asgiref.sync import sync_to_async
from django.core.asgi import get_asgi_application
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix

from console.logfilters import RedactSecrets

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

console = get_asgi_application()

# A web process keeps the holds of its running calls alive, and releases those of dead ones.
from billing.metering.renewals import start_renewals  # noqa: E402  (needs Django set up)

start_renewals()

from core import tracing  # noqa: E402

tracing.setup()  # when an OTLP endpoint is set: spans per request and for each step of a call

# uvicorn's access log prints whole URLs, and Google-style clients may put the key in ?key=.
# The filter goes on uvicorn's own logger, so its handler and --no-access-log stay as they are.
logging.getLogger("uvicorn.access").addFilter(RedactSecrets())

DATA_PLANE_PREFIXES = ("/v1/", "/v1beta/")


def _forwarded_hosts(scope) -> set[str]:
    """The hosts named in the request's X-Forwarded-For headers, without ports or brackets."""
    hosts = set()
    for name, value in scope["headers"]:
        if name != b"x-forwarded-for":
            continue
        for entry in value.decode("latin1").split(","):
            entry = entry.strip()
            if entry.startswith("["):  # [v6]:port
                entry = entry[1:].partition("]")[0]
            elif entry.count(":") == 1:  # v4:port
                entry = entry.partition(":")[0]
            hosts.add(entry)
    return hosts


def socket_client_only(scope) -> dict:
    """The scope, without a client address that came from X-Forwarded-For.

    uvicorn's ProxyHeadersMiddleware runs before this application and leaves no trace of the
    socket's address, so a client address named in the header is dropped: Django then has no
    REMOTE_ADDR, key IP lists refuse the call and the login form refuses to count it. The one
    caller this can refuse wrongly is a client that names its own address in the header.
    """
    client = scope.get("client")
    if client and client[0] in _forwarded_hosts(scope):
        return {**scope, "client": None}
    return scope


class DataPlaneHandler(ASGIHandler):
    """Django's ASGI handler without what the data plane does not use: no middleware chain, no
    request_started / request_finished signals (each costs a thread hop; the data plane reaches
    the database only through ``core.db.run_db``, whose threads keep their connections), and a
    listener for the client's disconnect only while a stream is sent."""

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(error_response, send)
                return
            response = await self.run_get_response(request)
            if not response.streaming:
                await self.send_response(response, send)
                response.close()  # closes the request's uploads; nothing here needs a thread
                return
            try:
                async with asyncio.TaskGroup() as group:
                    # A client that leaves cancels the stream (it is billed on close).
                    group.create_task(self.listen_for_disconnect(receive))
                    await self.send_response(response, send)
                    raise _Sent
            except* (_Sent, RequestAborted):
                pass
            await sync_to_async(response.close)()


class _Sent(Exception):
    pass


data_plane = DataPlaneHandler()


async def lifespan(receive, send) -> None:
    """At startup the metering engine's maintenance starts (heartbeat, dead processes'
    reservations); at shutdown, credit leases go back to their wallets, the attempt statistics
    not yet written are, and the upstream clients close their connections."""
    from billing.metering import meter
    from core.db import run_db
    from generation import health
    from generation.providers.clients import aclose_clients

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            meter.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await meter.shutdown()
            except Exception:  # the database is gone: the stale sweep releases them
                logging.getLogger(__name__).warning("leases not returned", exc_info=True)
            await run_db(health.recorder.flush)  # logs what it cannot write
            await aclose_clients()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def route(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] == "http":
        scope = socket_client_only(scope)
        if scope["path"].startswith(DATA_PLANE_PREFIXES):
            return await data_plane(scope, receive, send)
    return await console(scope, receive, send)


application = tracing.wrap_asgi(route)
