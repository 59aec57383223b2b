"""Errors in the envelope of the protocol the caller speaks.

OpenAI: {"error": {"message", "type", "param", "code"}}
Anthropic: {"type": "error", "error": {"type", "message"}}
Google: {"error": {"code", "message", "status"}}
"""

from enum import StrEnum

import orjson
from django.http import HttpResponse

from core import logs
from core.errors import ApiError


class Protocol(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}
_GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(protocol: Protocol, error: ApiError) -> dict:
    if protocol == Protocol.ANTHROPIC:
        kind = _ANTHROPIC_TYPES.get(error.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}}
    if protocol == Protocol.GEMINI:
        status = _GOOGLE_STATUSES.get(error.status, "INTERNAL")
        return {"error": {"code": error.status, "message": error.message, "status": status}}
    kind = _OPENAI_TYPES.get(error.status, "api_error")
    return {
        "error": {
            "message": error.message,
            "type": kind,
            "param": error.param,
            "code": error.code,
        }
    }


def json_response(data: dict, status: int = 200) -> HttpResponse:
    """A JSON answer of plain data (dicts, lists, str, numbers), encoded by orjson."""
    return HttpResponse(orjson.dumps(data), status=status, content_type="application/json")


def error_response(protocol: Protocol, error: ApiError) -> HttpResponse:
    logs.note(error=error.code)  # the request's access line says why it failed
    response = json_response(error_body(protocol, error), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response
