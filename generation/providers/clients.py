"""Upstream HTTP clients: the one place they are made, pooled and closed.

A client is pooled per channel configuration (``ChannelRoute.fingerprint``) and made with the
same credentials, limits and timeouts whether it is async or sync:

- async clients (the text routes) are kept per event loop, since a connection pool belongs to
  the loop that opened it, and are closed when that loop shuts down. A live channel's
  non-streamed calls go through a plain aiohttp session (``json_session``): httpx's request and
  response models cost a call more than twice the CPU of aiohttp's (about 450 against 160 us
  here), and a gateway's own cost per call is its product. Streams keep httpx (over aiohttp),
  whose SSE reader they use;
- sync clients (images and videos, from Celery workers and threads) are kept per process, since
  a worker forked from a parent that already had clients must not share the parent's sockets.

A channel in sandbox mode gets a client whose transport is the built-in sandbox: sandbox.py for
text, sandbox_media.py for images and videos (drawn by sandbox_render.py).
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING

import aiohttp
import httpx
from django.conf import settings

from catalogue.models import ChannelKind

if TYPE_CHECKING:
    from generation.providers import ChannelRoute

ANTHROPIC_VERSION = "2023-06-01"
# A text answer may take minutes; image and video calls pass their own, shorter, timeouts.
TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=60.0, pool=10.0)
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30)


def auth_headers(kind: str, secret: str) -> dict:
    if not secret:
        return {}
    if kind == ChannelKind.ANTHROPIC:
        return {"x-api-key": secret, "anthropic-version": ANTHROPIC_VERSION}
    if kind == ChannelKind.GEMINI:
        return {"x-goog-api-key": secret}
    return {"Authorization": f"Bearer {secret}"}


def _options(route: ChannelRoute) -> dict:
    """What a channel's client is made with, async or sync."""
    return {
        "base_url": route.base_url,
        "headers": auth_headers(route.kind, route.secret),
        "timeout": TIMEOUT,
        "follow_redirects": False,
    }


# --- Async: per event loop ---------------------------------------------------------------------


class _LoopClients:
    """One event loop's clients, closed when the loop shuts down.

    asyncio says nothing when a loop ends, but asyncio.run() (uvicorn, and asgiref's
    async_to_sync, so every in-process test request) closes the loop's async generators before
    the loop itself. Each loop's clients therefore come with one, parked at its yield, whose exit
    closes them: otherwise their aiohttp sessions outlive the loop, unclosed.
    """

    def __init__(self) -> None:
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.sessions: dict[str, aiohttp.ClientSession] = {}
        # The loop holds its async generators weakly; this reference keeps the closer alive.
        self.closer = self._close_on_exit()
        with suppress(StopIteration):
            # Runs it to its yield now, nothing being awaited before it: the running loop's
            # first-iteration hook registers it for shutdown.
            self.closer.asend(None).send(None)

    async def _close_on_exit(self):
        try:
            yield
        finally:
            _async.pop(asyncio.get_running_loop(), None)
            for client in self.clients.values():
                await client.aclose()
            for session in self.sessions.values():
                await session.close()


_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients]
_async = weakref.WeakKeyDictionary()


def _loop_clients() -> _LoopClients:
    loop = asyncio.get_running_loop()
    pool = _async.get(loop)
    if pool is None:
        pool = _async[loop] = _LoopClients()
    return pool


def async_client(route: ChannelRoute) -> httpx.AsyncClient:
    pool = _loop_clients()
    client = pool.clients.get(route.fingerprint)
    if client is None:
        client = httpx.AsyncClient(transport=_async_transport(route), **_options(route))
        pool.clients[route.fingerprint] = client
    return client


def json_session(route: ChannelRoute) -> aiohttp.ClientSession | None:
    """The aiohttp session for a live channel's non-streamed calls; None when they go through
    httpx (a sandbox channel, or ``BYTESPIKE_UPSTREAM_TRANSPORT=httpx``)."""
    if route.sandbox or settings.BYTESPIKE_UPSTREAM_TRANSPORT != "aiohttp":
        return None
    pool = _loop_clients()
    session = pool.sessions.get(route.fingerprint)
    if session is None:
        session = aiohttp.ClientSession(
            headers=auth_headers(route.kind, route.secret),
            connector=aiohttp.TCPConnector(
                limit=LIMITS.max_connections, keepalive_timeout=LIMITS.keepalive_expiry
            ),
            timeout=aiohttp.ClientTimeout(
                connect=TIMEOUT.pool, sock_connect=TIMEOUT.connect, sock_read=TIMEOUT.read
            ),
        )
        pool.sessions[route.fingerprint] = session
    return session


def _async_transport(route: ChannelRoute) -> httpx.AsyncBaseTransport:
    if route.sandbox:
        from generation.providers.sandbox import SandboxTransport

        return SandboxTransport(kind=route.kind, faults=route.faults)
    if settings.BYTESPIKE_UPSTREAM_TRANSPORT == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return AiohttpTransport(limits=LIMITS)
    return httpx.AsyncHTTPTransport(limits=LIMITS, retries=1)


# --- Sync: per process -------------------------------------------------------------------------

_sync: dict[tuple[int, str], httpx.Client] = {}
_sync_lock = threading.Lock()


def sync_client(route: ChannelRoute) -> httpx.Client:
    return _sync_client(
        route.fingerprint,
        lambda: httpx.Client(transport=_sync_transport(route), **_options(route)),
    )


def url_client() -> httpx.Client:
    """For links in upstream answers: they usually point at a CDN, not the API, so the client
    carries no credentials and follows a few redirects."""
    return _sync_client(
        "url",
        lambda: httpx.Client(
            limits=LIMITS, timeout=TIMEOUT, follow_redirects=True, max_redirects=3
        ),
    )


def _sync_client(name: str, make: Callable[[], httpx.Client]) -> httpx.Client:
    key = (os.getpid(), name)
    client = _sync.get(key)
    if client is not None:
        return client
    with _sync_lock:
        client = _sync.get(key)
        if client is None:
            client = _sync[key] = make()
    return client


def _sync_transport(route: ChannelRoute) -> httpx.BaseTransport:
    if route.sandbox:
        # Sync clients serve images and videos, which the media sandbox answers for any kind.
        from generation.providers.sandbox_media import SandboxMediaTransport

        return SandboxMediaTransport(faults=route.faults)
    return httpx.HTTPTransport(limits=LIMITS, retries=1)


# --- Closing -----------------------------------------------------------------------------------


def close_clients() -> None:
    """Close and forget the process's sync clients (tests, worker shutdown). Async clients are
    closed with their event loop, or by aclose_clients() in it."""
    with _sync_lock:
        clients = list(_sync.values())
        _sync.clear()
    for client in clients:
        client.close()


async def aclose_clients() -> None:
    """Close and forget the running loop's clients and the process's sync ones (ASGI shutdown)."""
    pool = _async.get(asyncio.get_running_loop())
    if pool is not None:
        await pool.closer.aclose()
    close_clients()
