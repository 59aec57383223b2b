"""Upstream providers: one pooled async httpx client per channel, its authentication, and the
error taxonomy every upstream failure is mapped to.

A channel in sandbox mode gets a client whose transport is the built-in sandbox (sandbox.py): the
same request, translated into the channel's wire format, is answered in-process.
"""

import asyncio
import hashlib
import logging
import re
import weakref
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import orjson
from django.conf import settings
from httpx_sse import EventSource

from generation.models import Channel, ChannelKind
from generation.protocols.base import SSE, UpstreamCall

logger = logging.getLogger(__name__)

ANTHROPIC_VERSION = "2023-06-01"
JSON = {"content-type": "application/json"}
TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=60.0, pool=10.0)
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30)


class UpstreamError(Exception):
    """An upstream failure, already mapped to what the caller sees (SPEC §4): the provider's own
    words are kept only when they are about the request (400), and never a secret."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after: str | None = None,
        transient: bool | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        # Worth trying again later (rate limits, timeouts, provider outages), unlike a refusal.
        self.transient = status in (429, 503, 504) if transient is None else transient


_SECRETISH = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|Bearer\s+\S+)")


def redact(text: str) -> str:
    return _SECRETISH.sub("[redacted]", text)[:500]


def upstream_error_for(status: int, body: bytes, retry_after: str | None = None) -> UpstreamError:
    """Map an upstream HTTP error answer to the caller's status and code."""
    if status == 429:
        return UpstreamError(
            429, "rate_limit_exceeded", "The upstream provider is rate limiting; retry later.",
            retry_after,
        )  # fmt: skip
    if status in (400, 413, 422):
        detail = _provider_message(body)
        return UpstreamError(
            400, "invalid_param", f"The provider refused the request: {redact(detail)}"
        )
    if status in (401, 403):
        # Our credentials, not the caller's: say so without details.
        return UpstreamError(502, "upstream_error", "The upstream provider refused our access.")
    if status == 404:
        return UpstreamError(502, "upstream_error", "The upstream provider has no such model.")
    return UpstreamError(
        502, "upstream_error", f"The upstream provider failed ({status}).", transient=True
    )


def _provider_message(body: bytes) -> str:
    import json

    try:
        data = json.loads(body)
    except ValueError:
        return "invalid request"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("status") or "invalid request")
    if isinstance(error, str):
        return error
    return "invalid request"


def auth_headers(kind: str, secret: str) -> dict:
    if not secret:
        return {}
    if kind == ChannelKind.ANTHROPIC:
        return {"x-api-key": secret, "anthropic-version": ANTHROPIC_VERSION}
    if kind == ChannelKind.GEMINI:
        return {"x-goog-api-key": secret}
    return {"Authorization": f"Bearer {secret}"}


@dataclass(frozen=True)
class ChannelRoute:
    """What a request needs of its channel, without the ORM object."""

    pk: int
    kind: str
    sandbox: bool
    base_url: str
    secret: str

    @classmethod
    def of(cls, channel: Channel) -> "ChannelRoute":
        return cls(
            pk=channel.pk,
            kind=channel.kind,
            sandbox=channel.is_sandbox,
            base_url=channel.base_url.rstrip("/") or "https://sandbox.invalid",
            secret="" if channel.is_sandbox else channel.get_secret(),
        )

    @property
    def fingerprint(self) -> str:
        raw = f"{self.pk}|{self.sandbox}|{self.base_url}|{self.secret}"
        return hashlib.sha256(raw.encode()).hexdigest()


# One client per channel configuration and event loop (a client's pool belongs to its loop).
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]]"
_clients = weakref.WeakKeyDictionary()


def client_for(route: ChannelRoute) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    client = clients.get(route.fingerprint)
    if client is None:
        if route.sandbox:
            from generation.providers.sandbox import SandboxTransport

            transport = SandboxTransport(kind=route.kind)
        elif settings.BYTESPIKE_UPSTREAM_TRANSPORT == "aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=LIMITS)
        else:
            transport = httpx.AsyncHTTPTransport(limits=LIMITS, retries=1)
        client = httpx.AsyncClient(
            base_url=route.base_url,
            headers=auth_headers(route.kind, route.secret),
            timeout=TIMEOUT,
            transport=transport,
            follow_redirects=False,
        )
        clients[route.fingerprint] = client
    return client


async def send_json(route: ChannelRoute, call: UpstreamCall) -> dict:
    """POST a non-streaming call; the JSON answer, or UpstreamError."""
    client = client_for(route)
    try:
        response = await client.post(
            call.path, content=orjson.dumps(call.body), params=call.params, headers=JSON
        )
    except httpx.TimeoutException:
        raise UpstreamError(504, "upstream_timeout", "The upstream provider timed out.") from None
    except httpx.HTTPError as error:
        logger.warning("upstream %s failed: %s", route.kind, type(error).__name__)
        raise UpstreamError(
            502, "upstream_error", "Could not reach the upstream provider."
        ) from None
    if response.status_code >= 400:
        raise upstream_error_for(
            response.status_code, response.content, response.headers.get("retry-after")
        )
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise UpstreamError(502, "upstream_error", "The upstream answer was not JSON.") from None


@asynccontextmanager
async def open_stream(route: ChannelRoute, call: UpstreamCall):
    """Open a streaming call and yield an async iterator of SSE events.

    Errors before the stream starts (status, connect, timeout) raise UpstreamError here, so the
    caller can still answer with a proper HTTP status; the connection is closed on exit.
    """
    client = client_for(route)
    request = client.build_request(
        "POST", call.path, content=orjson.dumps(call.body), params=call.params, headers=JSON
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.TimeoutException:
        raise UpstreamError(504, "upstream_timeout", "The upstream provider timed out.") from None
    except httpx.HTTPError as error:
        logger.warning("upstream %s failed: %s", route.kind, type(error).__name__)
        raise UpstreamError(
            502, "upstream_error", "Could not reach the upstream provider.", transient=True
        ) from None
    try:
        if response.status_code >= 400:
            body = await response.aread()
            raise upstream_error_for(
                response.status_code, body, response.headers.get("retry-after")
            )
        yield _events(response)
    finally:
        await response.aclose()


async def _events(response: httpx.Response):
    try:
        async for event in EventSource(response).aiter_sse():
            yield SSE(data=event.data, event=event.event if event.event != "message" else "")
    except httpx.TimeoutException:
        raise UpstreamError(504, "upstream_timeout", "The upstream provider timed out.") from None
    except httpx.HTTPError:
        raise UpstreamError(
            502, "upstream_error", "The upstream provider dropped the stream."
        ) from None
