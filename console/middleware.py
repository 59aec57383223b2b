"""Project middleware."""

import logging

import redis.exceptions as redis
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.db import DatabaseError, DataError
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin
from ulid import ULID
from whitenoise.middleware import WhiteNoiseMiddleware

from core import logs

logger = logging.getLogger(__name__)


class SyncAndAsync:
    """A middleware that runs in whichever mode the stack runs (sync or async): one that is
    sync-only would make Django move every request through a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)


class StaticFilesMiddleware(SyncAndAsync):
    """WhiteNoise, but async-capable.

    WhiteNoise's middleware is sync-only, which would make Django run every request of the async
    data plane through a thread. Only requests for static files need WhiteNoise, so everything
    else passes straight through in whichever mode the stack runs.
    """

    def __init__(self, get_response):
        super().__init__(get_response)
        self.whitenoise = WhiteNoiseMiddleware(get_response)
        self.prefix = settings.STATIC_URL

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        return self._static_response(request) or self.get_response(request)

    async def __acall__(self, request):
        if request.path_info.startswith(self.prefix):
            response = await sync_to_async(self._static_response, thread_sensitive=False)(request)
            if response is not None:
                return response
        return await self.get_response(request)

    def _static_response(self, request):
        """WhiteNoise's answer for a static file it knows, else None."""
        if not request.path_info.startswith(self.prefix):
            return None
        whitenoise = self.whitenoise
        if whitenoise.autorefresh:
            static_file = whitenoise.find_file(request.path_info)
        else:
            static_file = whitenoise.files.get(request.path_info)
        return whitenoise.serve(static_file, request) if static_file is not None else None


# The data plane logs its own lines (in production its requests do not even pass through here;
# the test client sends them through the middleware).
DATA_PLANE_PREFIXES = ("/v1/", "/v1beta/")
# Probes and scrapes come every few seconds: their lines are DEBUG, below the default level.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestLogMiddleware(SyncAndAsync):
    """The console's and management API's requests get a request id (``X-Request-ID``, and on
    every line logged meanwhile) and end with one access line (core.logs.Access): the route's
    name, never its path (a password-reset link carries its token in the path), the status, the
    duration, and the user, account and management key the request turned out to be for.

    The data plane (/v1, /v1beta) runs without middleware and logs its own lines the same way
    (generation/dataplane/base.py).
    """

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        if request.path_info.startswith(DATA_PLANE_PREFIXES):
            return self.get_response(request)
        with self._access(request) as access:
            response = self.get_response(request)
            self._finish(request, response, access)
        return response

    async def __acall__(self, request):
        if request.path_info.startswith(DATA_PLANE_PREFIXES):
            return await self.get_response(request)
        with self._access(request) as access:
            response = await self.get_response(request)
            self._finish(request, response, access)
        return response

    @staticmethod
    def _access(request) -> logs.Access:
        request.bytespike_request_id = request_id = f"req_{ULID()}"
        surface = "api" if request.path_info.startswith("/api/") else "console"
        access = logs.Access(request_id, surface=surface, method=request.method)
        if request.path_info in QUIET_PATHS:
            access.level = logging.DEBUG
        return access

    @staticmethod
    def _finish(request, response, access: logs.Access) -> None:
        match = request.resolver_match
        access.note(route=match.view_name if match else "", status=response.status_code)
        if "X-Request-ID" not in response:
            response["X-Request-ID"] = access.fields["request_id"]


# What a dependency that cannot be reached raises: the database, and Redis (which django-allauth
# needs to count log-in and password-reset attempts: those pages cannot work without it, and
# failing open would let password guessing through while Redis is down).
UNAVAILABLE = (DatabaseError, redis.ConnectionError, redis.TimeoutError)


UNSTORABLE_MESSAGE = (
    "A value in this request, such as a filter, holds a character the database cannot take "
    "(a NUL, for instance). Change the value and try again."
)


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A database (or Redis) that cannot be reached is a 503 page (Retry-After), not a 500 with an
    error report: the console recovers by itself when it is back.

    A value the database refuses (``DataError``: PostgreSQL takes no NUL in text) is a
    ``DatabaseError`` too, but no outage: it is the request's fault, a 400 page that says so.
    """

    def process_exception(self, request, exception):
        if isinstance(exception, DataError):
            logger.info("value refused by the database for %s: %s", request.path, exception)
            return render(request, "400.html", {"message": UNSTORABLE_MESSAGE}, status=400)
        if not isinstance(exception, UNAVAILABLE):
            return None
        logger.warning("dependency unavailable for %s", request.path, exc_info=True)
        response = render(request, "503.html", status=503)
        response["Retry-After"] = "5"
        return response
