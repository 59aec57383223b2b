"""ASGI entry point: ``uvicorn console.asgi:application``.

Two Django handlers share one URL map. The data plane (/v1, /v1beta), which apps call with an
inference key, runs without middleware: Django's middleware are synchronous at heart (each one
would move every call through a thread twice), and none of them does anything for an API call
(sessions, CSRF, messages, auth and the console's security headers are the console's). The
console, the management API and the admin run through the full middleware stack.
"""

import logging
import os

from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

from console.logfilters import RedactSecrets

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

console = get_asgi_application()

# uvicorn's access log prints whole URLs, and Google-style clients may put the key in ?key=.
# The filter goes on uvicorn's own logger, so its handler and --no-access-log stay as they are.
logging.getLogger("uvicorn.access").addFilter(RedactSecrets())

DATA_PLANE_PREFIXES = ("/v1/", "/v1beta/")


class DataPlaneHandler(ASGIHandler):
    """Django's ASGI handler with no middleware chain."""

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response_async if is_async else self._get_response
        self._middleware_chain = convert_exception_to_response(get_response)


data_plane = DataPlaneHandler()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith(DATA_PLANE_PREFIXES):
        return await data_plane(scope, receive, send)
    return await console(scope, receive, send)
