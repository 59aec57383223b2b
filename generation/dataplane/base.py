"""What every data-plane view shares: key authentication, the protocol's error envelope and the
response headers."""

from collections.abc import Callable
from functools import wraps

from django.views.decorators.csrf import csrf_exempt
from ulid import ULID

from accounts.keyauth import KeyAuthError, authenticate_inference
from generation.dataplane.errors import GatewayError, Protocol, error_response
from generation.metering import current_headers


def request_protocol(request) -> Protocol:
    """The caller's protocol, for routes that several protocols share (such as /v1/models)."""
    if request.path.startswith("/v1beta/"):
        return Protocol.GEMINI
    if "anthropic-version" in request.headers:
        return Protocol.ANTHROPIC
    return Protocol.OPENAI


def dataplane_view(protocol: Protocol | Callable = request_protocol):
    """Wrap an async view ``view(request, principal, ...)`` that may raise ``GatewayError``."""

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        async def wrapper(request, *args, **kwargs):
            request_id = f"req_{ULID()}"
            caller = protocol(request) if callable(protocol) else protocol
            request.bytespike_request_id = request_id
            try:
                principal = await authenticate_inference(request)
            except KeyAuthError as error:
                response = error_response(
                    caller, GatewayError(error.status, error.code, error.message)
                )
            else:
                try:
                    response = await view(request, principal, *args, **kwargs)
                except GatewayError as error:
                    response = error_response(caller, error)
                if "X-Org-Quota-Remaining-Credits" not in response:
                    # Billed calls set these from their hold; other answers read them now.
                    for name, value in (await current_headers(principal)).items():
                        response.headers.setdefault(name, value)
            response["X-Request-ID"] = request_id
            return response

        return wrapper

    return decorator
