"""What every data-plane view shares: key authentication, the protocol's error envelope and the
response headers."""

import logging
from collections.abc import Callable
from functools import wraps

from django.db import DatabaseError
from django.views.decorators.csrf import csrf_exempt
from ulid import ULID

from accounts.keyauth import KeyAuthError, authenticate_inference
from generation.dataplane.errors import GatewayError, Protocol, error_response
from generation.metering import current_headers

logger = logging.getLogger(__name__)


def request_protocol(request) -> Protocol:
    """The caller's protocol, for routes that several protocols share (such as /v1/models)."""
    if request.path.startswith("/v1beta/"):
        return Protocol.GEMINI
    if "anthropic-version" in request.headers:
        return Protocol.ANTHROPIC
    return Protocol.OPENAI


def unavailable() -> GatewayError:
    error = GatewayError(
        503, "service_unavailable", "ByteSpike is briefly unavailable; retry in a few seconds."
    )
    error.headers["Retry-After"] = "5"
    return error


def dataplane_view(protocol: Protocol | Callable = request_protocol):
    """Wrap an async view ``view(request, principal, ...)`` that may raise ``GatewayError``.

    A database that cannot be reached (restarting, failing over) is a 503 with Retry-After in
    the caller's envelope, never a 500: the call was not made, and nothing was billed.
    """

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        async def wrapper(request, *args, **kwargs):
            request_id = f"req_{ULID()}"
            caller = protocol(request) if callable(protocol) else protocol
            request.bytespike_request_id = request_id
            try:
                response = await _answer(view, request, caller, args, kwargs)
            except DatabaseError:
                logger.warning("database unavailable for %s", request.path, exc_info=True)
                response = error_response(caller, unavailable())
            response["X-Request-ID"] = request_id
            return response

        return wrapper

    return decorator


async def _answer(view, request, caller, args, kwargs):
    try:
        principal = await authenticate_inference(request)
    except KeyAuthError as error:
        return error_response(caller, GatewayError(error.status, error.code, error.message))
    try:
        response = await view(request, principal, *args, **kwargs)
    except GatewayError as error:
        response = error_response(caller, error)
    if "X-Org-Quota-Remaining-Credits" not in response:
        # Billed calls set these from their hold; other answers read them now.
        for name, value in (await current_headers(principal)).items():
            response.headers.setdefault(name, value)
    return response
