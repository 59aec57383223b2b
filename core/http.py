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
