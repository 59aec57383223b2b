"""Where a callback may go: the checks of its URL and of the addresses its host resolves to.

A callback URL is checked when a task is submitted (``check_callback_url``) and again before
every attempt (``callback_target``), against what its host resolves to *then*. Delivery
connects only to an address that passed that second check (transport.py pins the connection
to it), so DNS rebinding between check and connect cannot reach an internal address.
"""

import ipaddress
import logging
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings

logger = logging.getLogger(__name__)

MAX_URL_LENGTH = 2000


class CallbackURLError(ValueError):
    """A callback URL we will not send to; the message can be shown to the API caller."""


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


def exempt_host(host: str) -> bool:
    """True for a host exempt from the address rules (BYTESPIKE_CALLBACK_ALLOWED_HOSTS)."""
    return host.strip("[]").rstrip(".").lower() in _allowed_hosts()


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


def _parse(url: str, name: str) -> tuple[httpx.URL, str]:
    """The URL and its host (ASCII, lower case, no brackets), or CallbackURLError."""
    if not isinstance(url, str) or not url.strip():
        raise CallbackURLError(f"{name} must be a URL.")
    if len(url) > MAX_URL_LENGTH:
        raise CallbackURLError(f"{name} is longer than {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        raise CallbackURLError(f"{name} is not a valid URL.")
    try:
        parsed = httpx.URL(url)
        raw_host = parsed.raw_host.decode("ascii")
        has_at = "@" in urlsplit(url).netloc
    except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
        raise CallbackURLError(f"{name} is not a valid URL.") from None
    allowed_schemes = {"https", "http"} if settings.BYTESPIKE_CALLBACK_ALLOW_HTTP else {"https"}
    if parsed.scheme not in allowed_schemes:
        raise CallbackURLError(f"{name} must use https.")
    if parsed.userinfo or has_at:
        raise CallbackURLError(f"{name} must not contain a user name or password.")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise CallbackURLError(f"{name} has an invalid port.")
    host = raw_host.lower().rstrip(".")
    if not host:
        raise CallbackURLError(f"{name} must have a host.")
    if not (_is_ip_literal(host) or _HOST_NAME.fullmatch(host)):
        raise CallbackURLError(f"{name} has an invalid host.")
    return parsed, host


def _resolve(host: str, port: int, name: str) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise CallbackURLError(f"{name}'s host could not be resolved.") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise CallbackURLError(f"{name}'s host could not be resolved.")
    return addresses


def callback_target(url: str, *, name: str = "callback_url") -> CallbackTarget:
    """Check a callback URL and resolve its host now; raise CallbackURLError if we won't send.
    ``name`` is what the messages call the URL (alert channels share these rules).

    Every address the host resolves to must be public: one bad address refuses the URL, since
    a client's resolver (or an attacker's DNS) decides which one a connection would use.
    """
    parsed, host = _parse(url, name)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    exempt = host in _allowed_hosts()
    literal = _is_ip_literal(host) or _is_numeric_host(host)
    if not exempt and not literal:
        if host == "localhost" or host in METADATA_HOSTS or host.endswith(INTERNAL_SUFFIXES):
            raise CallbackURLError(f"{name} must not point to an internal host.")
        if "." not in host:
            raise CallbackURLError(f"{name}'s host must be a fully qualified domain name.")
    addresses = _resolve(host, port, name)
    if not exempt:
        for address in addresses:
            reason = address_refusal(address)
            if reason and literal:
                raise CallbackURLError(f"{name} is not a public address ({reason}).")
            if reason:
                logger.info("callback URL host %s resolves to a %s address", host, reason)
                raise CallbackURLError(f"{name} must resolve to public addresses only.")
    return CallbackTarget(url=parsed, host=host, port=port, addresses=addresses)


def check_callback_url(url: str) -> str:
    """The URL to store for a task, if we would send to it now (else CallbackURLError)."""
    callback_target(url)
    return url
