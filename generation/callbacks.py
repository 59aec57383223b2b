"""Task callbacks: signed webhooks (Standard Webhooks) to the URL a task was submitted with.

Three concerns live here, in this order:

- *Where we may connect.* A callback URL is checked when a task is submitted
  (``check_callback_url``) and again before every attempt, against what its host resolves to
  *then*. Delivery connects only to an address that passed that second check (the connection
  is pinned to it), so DNS rebinding between check and connect cannot reach an internal
  address; TLS still verifies the certificate against the URL's host name.
- *What we send.* The payload and ``webhook-id`` are fixed when the delivery is created; each
  attempt serialises the payload once and signs exactly those bytes with the account's secret.
- *When we send.* Each attempt is claimed with a conditional UPDATE, so two workers never send
  the same attempt; failures are retried with backoff and jitter for about a day, and every
  attempt is recorded for the console.
"""

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import re
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from urllib.parse import urlsplit

import certifi
import httpcore
import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import F, Max, QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from accounts.models import Account, User
from accounts.services import audit_record
from accounts.webhooks import WebhookSecretError, webhook_signing_keys
from core.ids import new_public_id
from generation.models import (
    CallbackAttempt,
    CallbackDelivery,
    DeliveryStatus,
    Task,
    TaskStatus,
)

logger = logging.getLogger(__name__)

USER_AGENT = "ByteSpike-Webhooks/1"
MAX_URL_LENGTH = 2000
# Enough of the answer to show what the receiver said; the rest is never read.
MAX_RESPONSE_BYTES = 4096
EXCERPT_CHARS = 500  # CallbackAttempt.response_excerpt
ERROR_CHARS = 300  # CallbackAttempt.error, CallbackDelivery.last_error

EVENT_TYPES = {
    TaskStatus.COMPLETED: "task.completed",
    TaskStatus.FAILED: "task.failed",
    TaskStatus.CANCELLED: "task.cancelled",
}

# Seconds to wait after the n-th failed attempt (before jitter): about a day in all.
RETRY_DELAYS = (10, 30, 120, 300, 900, 1800, 3600, 7200, 14400, 28800, 28800)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.2
# A claimed attempt holds the delivery this long past its timeout: if the worker dies while
# sending, the beat task finds it due again afterwards.
LEASE_MARGIN = timedelta(seconds=60)
# A message may arrive a little before next_attempt_at (clocks, rounding); it still counts.
EARLY_TOLERANCE = timedelta(seconds=2)
# Deliveries this far past due have probably lost their message; the beat task resends them.
RESEND_GRACE = timedelta(seconds=60)


class CallbackURLError(ValueError):
    """A callback URL we will not send to; the message can be shown to the API caller."""


class RedeliveryBusyError(RuntimeError):
    """Another attempt of the same delivery started at the same moment."""


# --- Addresses and URLs -----------------------------------------------------------------------

# Cloud metadata services and names that only ever mean "inside this network".
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "metadata.tencentyun.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
INTERNAL_SUFFIXES = (
    ".localhost",
    ".internal",
    ".local",
    ".localdomain",
    ".home.arpa",
)
# Ranges that ipaddress does not flag the way we need (or flags only as "not global").
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64: an IPv4 address inside
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")


def address_refusal(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why we won't connect to this address ("" when it is a public internet address)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        # Addresses that carry an IPv4 address are judged by that address.
        if ip.ipv4_mapped is not None:
            return address_refusal(ip.ipv4_mapped)
        if ip in _NAT64:
            return address_refusal(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:
            return address_refusal(ip.sixtofour)
        if ip.teredo is not None:
            return "tunnelled"
        if ip.is_site_local:
            return "site-local"
        if ip in _UNIQUE_LOCAL:
            return "unique-local"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("this-network", ip.version == 4 and ip in _THIS_NETWORK),
        ("shared (CGNAT)", ip.version == 4 and ip in _SHARED),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("IPv4-compatible", ip.version == 6 and ip in _IPV4_COMPATIBLE),
        ("non-global", not ip.is_global),
    )
    return next((reason for reason, refused in checks if refused), "")


def _allowed_hosts() -> frozenset[str]:
    """Hosts exempt from the address rules: local development and tests only."""
    return frozenset(
        host.strip().strip("[]").rstrip(".").lower()
        for host in settings.BYTESPIKE_CALLBACK_ALLOWED_HOSTS
        if host.strip()
    )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_numeric_host(host: str) -> bool:
    """True for IPv4 in any spelling the resolver takes as a number (2130706433, 0x7f.1)."""
    try:
        socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return False
    return True


@dataclass(frozen=True)
class CallbackTarget:
    """A checked callback URL: its host, and the addresses we may connect to for it."""

    url: httpx.URL
    host: str
    port: int
    addresses: tuple[str, ...]


def _parse(url: str) -> tuple[httpx.URL, str]:
    """The URL and its host (ASCII, lower case, no brackets), or CallbackURLError."""
    if not isinstance(url, str) or not url.strip():
        raise CallbackURLError("callback_url must be a URL.")
    if len(url) > MAX_URL_LENGTH:
        raise CallbackURLError(f"callback_url is longer than {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        raise CallbackURLError("callback_url is not a valid URL.")
    try:
        parsed = httpx.URL(url)
        raw_host = parsed.raw_host.decode("ascii")
        has_at = "@" in urlsplit(url).netloc
    except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
        raise CallbackURLError("callback_url is not a valid URL.") from None
    allowed_schemes = {"https", "http"} if settings.BYTESPIKE_CALLBACK_ALLOW_HTTP else {"https"}
    if parsed.scheme not in allowed_schemes:
        raise CallbackURLError("callback_url must use https.")
    if parsed.userinfo or has_at:
        raise CallbackURLError("callback_url must not contain a user name or password.")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise CallbackURLError("callback_url has an invalid port.")
    host = raw_host.lower().rstrip(".")
    if not host:
        raise CallbackURLError("callback_url must have a host.")
    if not (_is_ip_literal(host) or _HOST_NAME.fullmatch(host)):
        raise CallbackURLError("callback_url has an invalid host.")
    return parsed, host


def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise CallbackURLError("callback_url's host could not be resolved.") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise CallbackURLError("callback_url's host could not be resolved.")
    return addresses


def callback_target(url: str) -> CallbackTarget:
    """Check a callback URL and resolve its host now; raise CallbackURLError if we won't send.

    Every address the host resolves to must be public: one bad address refuses the URL, since
    a client's resolver (or an attacker's DNS) decides which one a connection would use.
    """
    parsed, host = _parse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    exempt = host in _allowed_hosts()
    literal = _is_ip_literal(host) or _is_numeric_host(host)
    if not exempt and not literal:
        if host == "localhost" or host in METADATA_HOSTS or host.endswith(INTERNAL_SUFFIXES):
            raise CallbackURLError("callback_url must not point to an internal host.")
        if "." not in host:
            raise CallbackURLError("callback_url's host must be a fully qualified domain name.")
    addresses = _resolve(host, port)
    if not exempt:
        for address in addresses:
            reason = address_refusal(address)
            if reason and literal:
                raise CallbackURLError(f"callback_url is not a public address ({reason}).")
            if reason:
                logger.info("callback URL host %s resolves to a %s address", host, reason)
                raise CallbackURLError("callback_url must resolve to public addresses only.")
    return CallbackTarget(url=parsed, host=host, port=port, addresses=addresses)


def check_callback_url(url: str) -> str:
    """The URL to store for a task, if we would send to it now (else CallbackURLError)."""
    callback_target(url)
    return url


# --- Signing (Standard Webhooks) --------------------------------------------------------------


def sign(*, key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def payload_body(payload: dict) -> bytes:
    """The exact bytes sent for a payload (and signed): compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_headers(
    *,
    key: bytes,
    webhook_id: str,
    timestamp: int,
    body: bytes,
    previous_key: bytes | None = None,
) -> dict:
    """The headers of one attempt. During a rotation's overlap window ``previous_key`` adds a
    second signature, space-separated as Standard Webhooks allows: a receiver holding either
    secret verifies the callback."""
    keys = (key,) if previous_key is None else (key, previous_key)
    signatures = [
        sign(key=one, webhook_id=webhook_id, timestamp=timestamp, body=body) for one in keys
    ]
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }


# --- Sending, pinned to a checked address -----------------------------------------------------


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


def _short(message: str) -> str:
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
        result.error = _short(f"Could not connect: {error}")
    except (httpcore.ProtocolError, httpcore.UnsupportedProtocol) as error:
        result.error = _short(f"Invalid HTTP answer: {error}")
    if result.error or result.status_code is None:
        return result
    if 300 <= result.status_code < 400:
        result.error = f"Redirect not followed (HTTP {result.status_code})."
    elif not 200 <= result.status_code < 300:
        result.error = f"The receiver answered HTTP {result.status_code}."
    return result


# --- Retry schedule ---------------------------------------------------------------------------


def retry_delay(attempts: int) -> float | None:
    """Seconds until the next try after ``attempts`` attempts failed; None once we give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    base = RETRY_DELAYS[max(attempts, 1) - 1]
    return base * random.uniform(1 - JITTER, 1 + JITTER)


def _lease() -> timedelta:
    return timedelta(seconds=settings.BYTESPIKE_CALLBACK_TIMEOUT_SECONDS) + LEASE_MARGIN


# --- Services ---------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def callback_schedule(task: Task, data: dict) -> CallbackDelivery | None:
    """Create the delivery of a task's terminal event and enqueue its first attempt on commit.

    Call it inside the transaction that makes the task terminal; ``data`` is the task object
    (as the query API returns it). Nothing happens for a task without a callback URL, and a
    second call for the same event returns the delivery the first one created.
    """
    if not task.callback_url:
        return None
    event_type = EVENT_TYPES.get(task.status)
    if event_type is None:
        raise ValueError(f"Task {task.public_id} is not terminal ({task.status}).")
    existing = CallbackDelivery.objects.filter(task=task, event_type=event_type).first()
    if existing is not None:
        return existing
    now = timezone.now()
    payload = {
        "type": event_type,
        "timestamp": _iso(now),
        # Through JSON once, so dates and decimals are stored exactly as they will be sent.
        "data": json.loads(json.dumps(data, cls=DjangoJSONEncoder)),
    }
    delivery = CallbackDelivery.objects.create(
        task=task,
        webhook_id=new_public_id("msg"),
        event_type=event_type,
        url=task.callback_url,
        payload=payload,
        next_attempt_at=now,
    )
    from generation.tasks import callback_deliver_task

    callback_deliver_task.delay_on_commit(delivery.pk)
    return delivery


def _claim(delivery: CallbackDelivery, *, manual: bool) -> bool:
    """Take the next attempt of a delivery, or learn that it is not ours to take.

    The UPDATE only matches the row as we read it (same attempt count, and for a scheduled
    attempt the same due time), so of two workers holding the same message one sends.
    """
    now = timezone.now()
    rows = CallbackDelivery.objects.filter(
        pk=delivery.pk, attempts=delivery.attempts, status=delivery.status
    )
    if not manual:
        due = delivery.next_attempt_at
        if delivery.status != DeliveryStatus.PENDING or due is None or due > now + EARLY_TOLERANCE:
            return False
        rows = rows.filter(next_attempt_at=due)
    changes: dict = {"attempts": F("attempts") + 1}
    if delivery.status == DeliveryStatus.PENDING:
        changes["next_attempt_at"] = now + _lease()
    if rows.update(**changes) != 1:
        return False
    delivery.attempts += 1
    delivery.next_attempt_at = changes.get("next_attempt_at", delivery.next_attempt_at)
    return True


def _attempt(delivery: CallbackDelivery) -> SendResult:
    """Check the URL again, sign, send. Refusals are results too: they are recorded."""
    try:
        target = callback_target(delivery.url)
    except CallbackURLError as error:
        return SendResult(error=_short(f"Not sent: {error}"))
    try:
        keys = webhook_signing_keys(delivery.task.account)
    except WebhookSecretError as error:
        return SendResult(error=_short(f"Not sent: {error}"))
    body = payload_body(delivery.payload)
    headers = webhook_headers(
        key=keys.current,
        previous_key=keys.previous,
        webhook_id=delivery.webhook_id,
        timestamp=int(time.time()),
        body=body,
    )
    return callback_send(
        target,
        headers=headers,
        body=body,
        timeout=settings.BYTESPIKE_CALLBACK_TIMEOUT_SECONDS,
    )


def _record_outcome(delivery: CallbackDelivery, result: SendResult) -> None:
    now = timezone.now()
    fields = {"last_status_code": result.status_code, "last_error": result.error}
    rows = CallbackDelivery.objects.filter(pk=delivery.pk)
    if result.ok:
        rows.update(
            **fields,
            status=DeliveryStatus.DELIVERED,
            next_attempt_at=None,
            delivered_at=Coalesce("delivered_at", now),
        )
    elif delivery.status == DeliveryStatus.PENDING:
        delay = retry_delay(delivery.attempts)
        if delay is None:
            fields.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
        else:
            fields["next_attempt_at"] = now + timedelta(seconds=delay)
        # If someone claimed a later attempt meanwhile, the schedule is theirs to set.
        rows.filter(status=DeliveryStatus.PENDING, attempts=delivery.attempts).update(**fields)
    else:
        # A manual resend of a delivered or failed delivery changes neither status nor schedule.
        rows.update(**fields)
    delivery.refresh_from_db()


def callback_deliver(delivery_id: int, *, manual: bool = False) -> CallbackAttempt | None:
    """Make the next attempt of a delivery if it is due (or now, when ``manual``).

    Returns the recorded attempt, or None when there was nothing to do: unknown, delivered,
    given up, not due yet, or another worker took this attempt. ``attempt.delivery`` carries
    the delivery's state afterwards (status, next_attempt_at).
    """
    delivery = (
        CallbackDelivery.objects.select_related("task__account").filter(pk=delivery_id).first()
    )
    if delivery is None or not _claim(delivery, manual=manual):
        return None
    attempted_at = timezone.now()
    started = time.monotonic()
    result = _attempt(delivery)
    result.duration_ms = round((time.monotonic() - started) * 1000)
    attempt = CallbackAttempt.objects.create(
        delivery=delivery,
        attempted_at=attempted_at,
        status_code=result.status_code,
        error=result.error,
        duration_ms=result.duration_ms,
        response_excerpt=result.excerpt,
        manual=manual,
    )
    _record_outcome(delivery, result)
    if not result.ok:
        logger.info(
            "callback %s attempt %d failed: %s",
            delivery.webhook_id,
            delivery.attempts,
            result.error,
        )
    return attempt


def callback_redeliver(delivery: CallbackDelivery, actor: User | None) -> CallbackAttempt:
    """Send a delivery again now (same webhook-id and payload, new timestamp and signature).

    Works in any status; a success marks it delivered. A pending delivery that fails again
    keeps its retry schedule, which counts this attempt.
    """
    attempt = callback_deliver(delivery.pk, manual=True)
    if attempt is None:
        raise RedeliveryBusyError("Another attempt of this delivery just started. Try again.")
    audit_record(
        account=delivery.task.account,
        actor=actor,
        action="callback.redeliver",
        target=delivery.webhook_id,
        status_code=attempt.status_code,
        error=attempt.error,
    )
    from generation.tasks import callback_enqueue_next

    callback_enqueue_next(attempt.delivery)
    return attempt


def deliveries_due(*, limit: int = 500) -> list[int]:
    """Pending deliveries well past due: their message was lost, or they waited longer than a
    broker countdown may be (the beat task enqueues them)."""
    cutoff = timezone.now() - RESEND_GRACE
    return list(
        CallbackDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=cutoff)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


# --- Selectors --------------------------------------------------------------------------------


def deliveries_for_account(
    account: Account, *, status: str | None = None
) -> QuerySet[CallbackDelivery]:
    deliveries = (
        CallbackDelivery.objects.filter(task__account=account)
        .select_related("task")
        .annotate(last_attempt_at=Max("attempt_log__attempted_at"))
        .order_by("-created_at", "-id")  # an aggregate drops Meta.ordering
    )
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries


def delivery_get_for_account(*, account: Account, webhook_id: str) -> CallbackDelivery:
    delivery = (
        CallbackDelivery.objects.filter(task__account=account, webhook_id=webhook_id)
        .select_related("task__account")
        .first()
    )
    if delivery is None:
        raise Http404("No such delivery.")
    return delivery
