"""What every data-plane view shares: the allowed methods, key authentication, reading the body,
the protocol's error envelope and the response headers."""

import logging
from collections.abc import Callable
from functools import wraps

import orjson
from django.core.exceptions import (
    BadRequest,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import DatabaseError, DataError
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt
from ulid import ULID

from core import logs, metrics, tracing
from core.errors import ApiError
from generation.dataplane.errors import Protocol, error_response
from generation.metering import current_headers
from keys.auth import KeyAuthError, authenticate_inference

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


def request_protocol(request) -> Protocol:
    """The caller's protocol, for routes that several protocols share (such as /v1/models), and
    for a URL that is no route."""
    path = request.path
    if path.startswith("/v1beta/") or (path.startswith("/v1/models/") and ":" in path):
        return Protocol.GEMINI
    if "anthropic-version" in request.headers:
        return Protocol.ANTHROPIC
    return Protocol.OPENAI


def unavailable() -> ApiError:
    error = ApiError(
        503, "service_unavailable", "ByteSpike is briefly unavailable; retry in a few seconds."
    )
    error.headers["Retry-After"] = "5"
    return error


def unstorable() -> ApiError:
    return ApiError(
        400, "invalid_param", "The request holds a value that cannot be stored, such as a NUL."
    )


def _unreadable(error: Exception) -> ApiError:
    """A request Django could not read: form fields over DATA_UPLOAD_MAX_MEMORY_SIZE, too many
    fields or files, a multipart body that is not one."""
    if isinstance(error, RequestDataTooBig):
        return ApiError(413, "request_too_large", "The request's form fields are too large.")
    if isinstance(error, TooManyFieldsSent | TooManyFilesSent):
        return ApiError(400, "invalid_param", "The request has too many fields or files.")
    if isinstance(error, MultiPartParserError):
        return ApiError(400, "invalid_param", "The body is not valid multipart/form-data.")
    return ApiError(400, "invalid_param", "The request could not be read.")


def dataplane_view(protocol: Protocol | Callable = request_protocol, *, methods: tuple[str, ...]):
    """Wrap an async view ``view(request, principal, ...)`` that may raise ``ApiError``.

    Every answer is in the caller's envelope and has its request id: another method is a 405
    (before the key is checked), a request Django cannot read a 400 or 413. A database that
    cannot be reached (restarting, failing over) is a 503 with Retry-After, never a 500: the
    call was not made, and nothing was billed.
    """

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        async def wrapper(request, *args, **kwargs):
            request_id = f"req_{ULID()}"
            caller = protocol(request) if callable(protocol) else protocol
            request.bytespike_request_id = request_id
            tracing.annotate(**{"bytespike.request_id": request_id})
            route = request.resolver_match.url_name
            with (
                logs.Access(request_id, **_access_fields(request, route, caller)) as access,
                metrics.DataPlaneCall(route, caller) as call,
            ):
                access.call = call
                response = await _respond(view, request, caller, methods, args, kwargs)
                call.status = response.status_code
                access.fields["stream"] = response.streaming
            response["X-Request-ID"] = request_id
            return response

        return wrapper

    return decorator


def _access_fields(request, route: str, caller: str) -> dict:
    return {"surface": "data_plane", "method": request.method, "route": route, "protocol": caller}


async def _respond(view, request, caller, methods, args, kwargs):
    try:
        if request.method not in methods:
            return error_response(caller, _method_not_allowed(request, methods))
        return await _answer(view, request, caller, args, kwargs)
    except DataError:
        # A value the database refuses (PostgreSQL: a NUL character), not an outage.
        return error_response(caller, unstorable())
    except DatabaseError:
        logger.warning("database unavailable for %s", request.path, exc_info=True)
        return error_response(caller, unavailable())
    except (BadRequest, SuspiciousOperation, MultiPartParserError) as error:
        return error_response(caller, _unreadable(error))


def _method_not_allowed(request, methods: tuple[str, ...]) -> ApiError:
    allowed = ", ".join(methods)
    error = ApiError(
        405, "method_not_allowed", f"{request.method} is not allowed here. Allowed: {allowed}."
    )
    error.headers["Allow"] = allowed
    return error


@csrf_exempt
async def unknown_route(request, *args, **kwargs):
    """Any /v1 or /v1beta URL that is no route: a 404 in the envelope the path suggests."""
    error = ApiError(404, "not_found", f"Unknown URL: {request.method} {request.path}.")
    caller = request_protocol(request)
    route = request.resolver_match.url_name
    request_id = f"req_{ULID()}"
    with logs.Access(request_id, **_access_fields(request, route, caller), status=404):
        metrics.REQUESTS.labels(route, caller, "", "404", "").inc()
        response = error_response(caller, error)
    response["X-Request-ID"] = request_id
    return response


def json_body(request, limit: int, *, allow_empty: bool = False) -> dict:
    """The request's JSON object, of at most ``limit`` bytes (else 413).

    Read from the request's stream, not ``request.body``: Django caps that at
    DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB, meant for the console's forms) and answers an HTML 400
    past it, where a text call may rightly be bigger (a long document, inline images). Parsed
    by orjson, which is strict where Python's parser is not: NaN, 1e999, a lone surrogate, text
    that is not UTF-8 and nesting over 1024 levels are a 400 like any other JSON it cannot read.
    """
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    raw = b"" if declared > limit else request.read(limit + 1)
    if declared > limit or len(raw) > limit:
        size = f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit} bytes"
        raise ApiError(413, "request_too_large", f"The request body is over {size}.")
    if allow_empty and not raw:
        return {}
    try:
        body = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_param", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_param", "The request body must be a JSON object.")
    return body


async def _answer(view, request, caller, args, kwargs):
    # A Host outside ALLOWED_HOSTS is refused before anything is spent: answers build their
    # media links from it, and failing there would fail a call that was already charged.
    request.get_host()
    try:
        with tracing.span("key auth"):
            principal = await authenticate_inference(request)
    except KeyAuthError as error:
        return error_response(caller, error)
    # Public ids only: every later line of the request names the account and key it is for.
    logs.bind(account_id=principal.account_public_id, key_id=principal.key_public_id)
    tracing.annotate(**{"bytespike.key": principal.key_public_id})
    try:
        response = await view(request, principal, *args, **kwargs)
    except ApiError as error:
        response = error_response(caller, error)
    if "X-Org-Quota-Remaining-Credits" not in response:
        # Billed calls set these from their hold; other answers read them now.
        for name, value in (await current_headers(principal)).items():
            response.headers.setdefault(name, value)
    return response
