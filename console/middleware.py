"""Project middleware."""

import logging

import redis.exceptions as redis
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.db import DatabaseError, DataError
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin
from whitenoise.middleware import WhiteNoiseMiddleware

logger = logging.getLogger(__name__)


class StaticFilesMiddleware:
    """WhiteNoise, but async-capable.

    WhiteNoise's middleware is sync-only, which would make Django run every request of the async
    data plane through a thread. Only requests for static files need WhiteNoise, so everything
    else passes straight through in whichever mode the stack runs.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
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
