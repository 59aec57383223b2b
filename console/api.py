"""The management API (/api/v1): JSON resources for scripts, authenticated by a management key
in ``x-api-key``. Each app contributes a router.

This module owns what every endpoint shares: the key check, the OpenAI-style error envelope
``{"error": {"message", "type", "param", "code"}}`` for every failure (ninja's own validation
errors, unknown routes and wrong methods included), and the OpenAPI document (/api/v1/openapi.json)
with its Swagger UI page (/api/v1/docs).

The docs page needs no exception to the site's strict Content Security Policy: ninja's template
loads Swagger UI from our own static files, its only inline <script> is a JSON data block (not
executed), and Swagger UI styles elements through the DOM, which ``style-src 'self'`` allows.
tests/api/test_docs_browser.py checks this in Chromium.
"""

from functools import wraps
from inspect import iscoroutinefunction

from django.core import signals
from django.db import DatabaseError, DataError
from django.http import Http404, JsonResponse
from django.urls import re_path
from django.utils.log import log_response
from django.views.decorators.common import no_append_slash
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Schema
from ninja.errors import HttpError, ValidationError
from ninja.security import APIKeyHeader

from accounts.services import ProjectError
from billing.reports import FilterError
from core.errors import ApiError
from generation.dataplane.errors import Protocol, error_body
from keys.auth import authenticate_management
from keys.models import ManagementKey
from keys.services import KeyRuleError

# The code a caller sees for an error that has no more specific one.
STATUS_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limit_exceeded",
}


class ErrorDetail(Schema):
    message: str
    type: str
    param: str | None
    code: str | None


class Error(Schema):
    error: ErrorDetail


def error_response(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> JsonResponse:
    error = ApiError(status, code or STATUS_CODES.get(status, "api_error"), message, param)
    return api_error_response(error)


def api_error_response(error: ApiError) -> JsonResponse:
    """Any ApiError in the OpenAI envelope, with its headers."""
    response = JsonResponse(error_body(Protocol.OPENAI, error), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


class ManagementKeyAuth(APIKeyHeader):
    """A management key (``sk-byts-admin-...``) in ``x-api-key``; ``request.auth`` is the key."""

    param_name = "x-api-key"

    def authenticate(self, request, key: str | None) -> ManagementKey:
        # Raises KeyAuthError (401) with a message that says what is wrong with the key.
        return authenticate_management(request)


def _enveloped(view):
    """Answer a route's uncaught 404 and ninja's plain-text 405 in the error envelope.

    Ninja sends these without consulting its exception handlers (a wrong method, the API root).
    """

    def convert(request, response):
        if response.status_code == 405 and "json" not in response.get("Content-Type", ""):
            allowed = response["Allow"]
            converted = error_response(
                405, f"{request.method} is not allowed here. Allowed: {allowed}."
            )
            converted["Allow"] = allowed
            return converted
        return response

    if iscoroutinefunction(view):

        @wraps(view)
        async def async_wrapper(request, *args, **kwargs):
            try:
                return convert(request, await view(request, *args, **kwargs))
            except Http404:
                return unknown_route(request)

        return async_wrapper

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return convert(request, view(request, *args, **kwargs))
        except Http404:
            return unknown_route(request)

    return wrapper


@csrf_exempt
@no_append_slash
def unknown_route(request, *args, **kwargs):
    # CSRF-exempt like every API view (it changes nothing): else a POST to an unknown path would
    # get the console's HTML "CSRF verification failed" page before it could be told "no such URL".
    return error_response(404, f"Unknown URL: {request.method} {request.path}.")


READ_ONLY = ("GET", "HEAD")


def _read_only(view):
    """Ninja's document views answer any method; other than GET and HEAD is a 405 here."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method not in READ_ONLY:
            response = error_response(
                405, f"{request.method} is not allowed here. Allowed: {', '.join(READ_ONLY)}."
            )
            response["Allow"] = ", ".join(READ_ONLY)
            return response
        return view(request, *args, **kwargs)

    return wrapper


class ManagementAPI(NinjaAPI):
    """NinjaAPI whose every URL, known or not, answers errors in the envelope, and whose
    OpenAPI document describes those errors once for all operations."""

    def _get_urls(self):
        urls = super()._get_urls()
        for pattern in urls:
            callback = _enveloped(pattern.callback)
            if pattern.name in ("openapi-json", "openapi-view"):
                callback = _read_only(callback)
            # Ninja's operations exempt themselves (a management key is no cookie); the document
            # views and the API root did not, so another method got Django's HTML CSRF page.
            pattern.callback = csrf_exempt(callback)
        # Last, so it only catches what no route matched; it resolves every path, so
        # CommonMiddleware never redirects an unknown /api/v1 path to its slash-appended twin.
        urls.append(re_path(r"^.*$", unknown_route, name="unknown"))
        return urls

    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        error_schema = Error.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(error_schema.pop("$defs", {}))
        schemas["Error"] = error_schema
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in schema["paths"].items():
            documented = {
                "400": "Invalid request: `param` names the field.",
                "401": "Missing, malformed, unknown or revoked management key.",
            }
            if "{" in path:
                documented["404"] = "No such object in your account."
            for operation in operations.values():
                for status, description in documented.items():
                    operation["responses"].setdefault(
                        status, {"description": description, "content": content}
                    )
        return schema


api = ManagementAPI(
    title="ByteSpike management API",
    version="1",
    description=(
        "Manage routing groups, projects, inference keys and alerts of your account. "
        "Authenticate with a management key (`sk-byts-admin-...`) in the `x-api-key` header. "
        "Errors use the "
        'OpenAI envelope `{"error": {"message", "type", "param", "code"}}`; lists are '
        '`{"items", "total", "page", "page_size"}`; amounts are credits (1 credit = 1 USD).'
    ),
    urls_namespace="api",
    auth=ManagementKeyAuth(),
)


# --- Errors ----------------------------------------------------------------------------------


@api.exception_handler(ApiError)
def _api_error(request, exc: ApiError):
    # A refused key (KeyAuthError) and any other domain refusal, rendered as raised.
    return api_error_response(exc)


@api.exception_handler(KeyRuleError)
def _key_rule_error(request, exc: KeyRuleError):
    return error_response(exc.status, str(exc), code=exc.code, param=exc.field)


@api.exception_handler(ProjectError)
def _project_error(request, exc: ProjectError):
    return error_response(exc.status, str(exc), code=exc.code, param=exc.field)


@api.exception_handler(FilterError)
def _filter_error(request, exc: FilterError):
    return error_response(400, str(exc), code="invalid_param", param=exc.field)


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    # Report the first problem, as OpenAI does; `param` is the field's path inside its source.
    first = exc.errors[0]
    source, *loc = first.get("loc", ())
    if source == "body" and loc:
        loc = loc[1:]  # ninja nests the body under the view's parameter name
    param = ".".join(str(part) for part in loc) or None
    message = first.get("msg", "Invalid value.")
    if source == "body" and param is None:
        # No body, or a body that is JSON but not an object (a list, a string, null).
        message = "Send a JSON object in the request body."
    elif first.get("type") == "extra_forbidden":
        message = f"Unknown parameter: {param}."
    return error_response(400, message, code="invalid_param", param=param)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        # ninja wraps a body that is not JSON (json.JSONDecodeError, UnicodeDecodeError), or
        # nested deeper than the parser goes.
        return error_response(
            400, "The request body is not valid JSON.", code="invalid_json", param=None
        )
    return error_response(exc.status_code, exc.message)


@api.exception_handler(Http404)
def _not_found(request, exc: Http404):
    return error_response(404, str(exc) or "Not found.")


@api.exception_handler(DataError)
def _unstorable_value(request, exc: DataError):
    # A value the database refuses (PostgreSQL: a NUL character in a filter or a name), not an
    # outage: the caller has to change the request.
    return error_response(
        400, "The request holds a value that cannot be stored, such as a NUL.", code="invalid_param"
    )


@api.exception_handler(DatabaseError)
def _database_unavailable(request, exc: DatabaseError):
    response = error_response(
        503, "ByteSpike is briefly unavailable; retry in a few seconds.", code="service_unavailable"
    )
    response["Retry-After"] = "5"
    return response


@api.exception_handler(Exception)
def _server_error(request, exc: Exception):
    # What Django does for an uncaught exception (signal, logged with the traceback, mailed to
    # ADMINS when configured), but answered in the envelope a client can parse.
    signals.got_request_exception.send(sender=None, request=request)
    response = error_response(500, "The server had an error processing your request.")
    log_response(
        "%s: %s",
        response.reason_phrase,
        request.path,
        response=response,
        request=request,
        exception=exc,
    )
    return response


# --- Routers ---------------------------------------------------------------------------------

api.add_router("", "keys.api.router")
api.add_router("", "keys.project_api.router")
api.add_router("", "billing.api.router")
api.add_router("", "billing.budget_api.router")
api.add_router("", "alerts.api.router")
