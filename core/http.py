"""Facts about an HTTP request that several apps read the same way."""

from django.conf import settings


def client_ip(request) -> str:
    """The caller's address: the socket peer, or the configured proxy header's entry.

    The one function for it: key IP lists (API and playground) and the login limits
    (``accounts.adapter``) all read it. Empty when the address is unknown (see console/asgi.py).
    """
    header = settings.BYTESPIKE_CLIENT_IP_HEADER
    if header:
        entries = [e.strip() for e in request.headers.get(header, "").split(",") if e.strip()]
        hops = settings.BYTESPIKE_TRUSTED_PROXIES
        if len(entries) >= hops:
            return entries[-hops]
    return request.META.get("REMOTE_ADDR", "")


def public_base_url(request) -> str:
    """Where callers reach this deployment, without a trailing slash: ``BYTESPIKE_PUBLIC_URL``
    when it is set (behind a proxy the request may name an inner host), else this request's own
    scheme and host. The gateway and the console share it: OpenAI SDKs add ``/v1``."""
    return settings.BYTESPIKE_PUBLIC_URL or request.build_absolute_uri("/").rstrip("/")
