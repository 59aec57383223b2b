"""Upstream providers: what a request needs of its channel, the text calls (whole and streamed),
and the error taxonomy every upstream failure is mapped to.

The clients themselves are made, pooled and closed in clients.py; a channel in sandbox mode gets
one whose transport is the built-in sandbox (sandbox.py): the same request, translated into the
channel's wire format, is answered in-process.
"""

import hashlib
import logging
import re
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import aiohttp
import httpx
import orjson
from httpx_sse import EventSource

from catalogue.models import Channel
from core.errors import ApiError
from generation.protocols.base import SSE, UpstreamCall
from generation.providers.clients import async_client, json_session

logger = logging.getLogger(__name__)

JSON = {"content-type": "application/json"}


class UpstreamError(ApiError):
    """An upstream failure, already mapped to what the caller sees (SPEC §4): the provider's own
    words are kept only when they are about the request (400), and never a secret. The
    provider's Retry-After is kept apart: only the text routes pass it on."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after: str | None = None,
        transient: bool | None = None,
    ):
        super().__init__(status, code, message)
        self.retry_after = retry_after
        # Worth trying again later (rate limits, timeouts, provider outages), unlike a refusal.
        self.transient = status in (429, 503, 504) if transient is None else transient
        # A 400 is the request's own fault: another deployment would refuse it too.
        self.caller_fault = status == 400


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


@contextmanager
def upstream_errors(
    route: "ChannelRoute",
    failed: str = "Could not reach the upstream provider.",
    *,
    transient: bool | None = None,
):
    """Map a transport failure inside the block to UpstreamError: a timeout is a 504, any other
    failure (connect, read, protocol) a 502 that says ``failed``. Only the exception's class is
    logged: its text may quote a URL or a header."""
    try:
        yield
    except (httpx.TimeoutException, TimeoutError):  # aiohttp's timeouts are TimeoutErrors
        raise UpstreamError(504, "upstream_timeout", "The upstream provider timed out.") from None
    except (httpx.HTTPError, aiohttp.ClientError) as error:
        logger.warning("upstream %s %s: %s", route.kind, type(error).__name__, failed)
        raise UpstreamError(502, "upstream_error", failed, transient=transient) from None


@dataclass(frozen=True)
class SandboxFaults:
    """The faults a sandbox channel plays (set per channel in the admin or the demo seed)."""

    failure_rate: float = 0.0
    timeout_rate: float = 0.0
    latency_ms: int = 0
    outage: tuple[float, float] | None = None  # epoch seconds: every call fails in between

    def in_outage(self, now: float) -> bool:
        return self.outage is not None and self.outage[0] <= now < self.outage[1]


@dataclass(frozen=True)
class ChannelRoute:
    """What a request needs of its channel, without the ORM object."""

    pk: int
    kind: str
    sandbox: bool
    base_url: str
    secret: str
    faults: SandboxFaults = SandboxFaults()

    @classmethod
    def of(cls, channel: Channel) -> "ChannelRoute":
        outage = None
        if channel.sandbox_outage_start and channel.sandbox_outage_end:
            outage = (
                channel.sandbox_outage_start.timestamp(),
                channel.sandbox_outage_end.timestamp(),
            )
        return cls(
            pk=channel.pk,
            kind=channel.kind,
            sandbox=channel.is_sandbox,
            base_url=channel.base_url.rstrip("/") or "https://sandbox.invalid",
            secret="" if channel.is_sandbox else channel.get_secret(),
            faults=SandboxFaults(
                failure_rate=float(channel.sandbox_failure_rate),
                timeout_rate=float(channel.sandbox_timeout_rate),
                latency_ms=channel.sandbox_latency_ms,
                outage=outage,
            ),
        )

    @property
    def fingerprint(self) -> str:
        raw = f"{self.pk}|{self.sandbox}|{self.base_url}|{self.secret}|{self.faults}"
        return hashlib.sha256(raw.encode()).hexdigest()


async def send_json(route: ChannelRoute, call: UpstreamCall) -> dict:
    """POST a non-streaming call; the JSON answer, or UpstreamError."""
    session = json_session(route)
    with upstream_errors(route):
        if session is None:
            response = await async_client(route).post(
                call.path, content=orjson.dumps(call.body), params=call.params, headers=JSON
            )
            status, headers, content = response.status_code, response.headers, response.content
        else:
            async with session.post(
                route.base_url + call.path, data=orjson.dumps(call.body), params=call.params,
                headers=JSON, allow_redirects=False,
            ) as response:  # fmt: skip
                status, headers, content = response.status, response.headers, await response.read()
    if status >= 400:
        raise upstream_error_for(status, content, headers.get("retry-after"))
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise UpstreamError(502, "upstream_error", "The upstream answer was not JSON.") from None


@asynccontextmanager
async def open_stream(route: ChannelRoute, call: UpstreamCall):
    """Open a streaming call and yield an async iterator of SSE events.

    Errors before the stream starts (status, connect, timeout) raise UpstreamError here, so the
    caller can still answer with a proper HTTP status; the connection is closed on exit.
    """
    client = async_client(route)
    request = client.build_request(
        "POST", call.path, content=orjson.dumps(call.body), params=call.params, headers=JSON
    )
    with upstream_errors(route, transient=True):
        response = await client.send(request, stream=True)
    try:
        if response.status_code >= 400:
            body = await response.aread()
            raise upstream_error_for(
                response.status_code, body, response.headers.get("retry-after")
            )
        yield _events(route, response)
    finally:
        await response.aclose()


async def _events(route: ChannelRoute, response: httpx.Response):
    with upstream_errors(route, "The upstream provider dropped the stream."):
        async for event in EventSource(response).aiter_sse():
            yield SSE(data=event.data, event=event.event if event.event != "message" else "")
