"""Sending one callback attempt, pinned to an address that passed the check.

The connection goes only to the addresses ``targets.callback_target`` accepted, whatever the
URL's host resolves to by then; TLS still verifies the certificate against the URL's host
name. One deadline bounds the whole attempt, and only the start of the answer is read.
"""

import ssl
import time
from dataclasses import dataclass
from functools import cache

import certifi
import httpcore

from generation.callbacks.targets import CallbackTarget

# Enough of the answer to show what the receiver said; the rest is never read.
MAX_RESPONSE_BYTES = 4096
EXCERPT_CHARS = 500  # CallbackAttempt.response_excerpt
ERROR_CHARS = 300  # CallbackAttempt.error, CallbackDelivery.last_error


def _left(deadline: float, timeout: float | None, expired: type[Exception]) -> float:
    """The timeout for one network operation: never past the attempt's deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise expired("The receiver did not answer in time.")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads and writes all end by one deadline, so a receiver that drips
    its answer a byte at a time cannot hold a worker past the attempt's timeout."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        timeout = _left(self._deadline, timeout, httpcore.ReadTimeout)
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        timeout = _left(self._deadline, timeout, httpcore.WriteTimeout)
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        # server_hostname is the URL's host: SNI and certificate checks use the name, not the
        # address we dialled.
        timeout = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        stream = self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class PinnedBackend(httpcore.SyncBackend):
    """Dials only the addresses that passed the check, whatever host the URL names."""

    def __init__(self, addresses: tuple[str, ...], deadline: float):
        self.addresses = addresses
        self.deadline = deadline
        self.connected_to: str | None = None

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        error: Exception = httpcore.ConnectError("No address to connect to.")
        for address in self.addresses:
            try:
                stream = super().connect_tcp(
                    address,
                    port,
                    timeout=_left(self.deadline, timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as failure:
                error = failure
                continue
            self.connected_to = address
            return _DeadlineStream(stream, self.deadline)
        raise error


@cache
def _ssl_context() -> ssl.SSLContext:
    # Verifies the chain and the host name (check_hostname); the same CA bundle as httpx.
    return ssl.create_default_context(cafile=certifi.where())


@dataclass
class SendResult:
    status_code: int | None = None
    error: str = ""
    excerpt: str = ""
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return not self.error and self.status_code is not None and 200 <= self.status_code < 300


def _excerpt(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    # Stored as plain text (and escaped when shown); control characters would only garble it.
    text = "".join(ch for ch in text if ch in "\n\t" or (ord(ch) >= 0x20 and ord(ch) != 0x7F))
    return text[:EXCERPT_CHARS]


def short_error(message: str) -> str:
    """An error message cut to what CallbackAttempt.error holds."""
    return message if len(message) <= ERROR_CHARS else message[: ERROR_CHARS - 1] + "…"


def callback_send(
    target: CallbackTarget, *, headers: dict, body: bytes, timeout: float
) -> SendResult:
    """POST once to a checked target: no redirects, one overall deadline, a bounded read.

    httpcore rather than httpx: it follows no redirects and reads no proxy settings from the
    environment (a proxy would dial something other than the checked address).
    """
    deadline = time.monotonic() + timeout
    backend = PinnedBackend(target.addresses, deadline)
    url = target.url
    request_headers = [(b"Host", url.netloc)] + [
        (name.encode(), value.encode()) for name, value in headers.items()
    ]
    request_url = httpcore.URL(
        scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
    )
    limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    result = SendResult()
    try:
        with (
            httpcore.ConnectionPool(
                ssl_context=_ssl_context(),
                network_backend=backend,
                retries=0,
                max_connections=1,
            ) as pool,
            pool.stream(
                "POST",
                request_url,
                headers=request_headers,
                content=body,
                extensions={"timeout": limits},
            ) as response,
        ):
            result.status_code = response.status
            received = bytearray()
            for chunk in response.iter_stream():
                received += chunk
                if len(received) >= MAX_RESPONSE_BYTES:
                    break
            result.excerpt = _excerpt(bytes(received[:MAX_RESPONSE_BYTES]))
    except httpcore.TimeoutException:
        result.error = f"Timed out: no complete answer within {timeout:g} s."
    except (httpcore.NetworkError, OSError) as error:
        result.error = short_error(f"Could not connect: {error}")
    except (httpcore.ProtocolError, httpcore.UnsupportedProtocol) as error:
        result.error = short_error(f"Invalid HTTP answer: {error}")
    if result.error or result.status_code is None:
        return result
    if 300 <= result.status_code < 400:
        result.error = f"Redirect not followed (HTTP {result.status_code})."
    elif not 200 <= result.status_code < 300:
        result.error = f"The receiver answered HTTP {result.status_code}."
    return result
