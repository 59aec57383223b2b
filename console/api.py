"""The management API (/api/v1): JSON resources for scripts, authenticated by a management key
in ``x-api-key``. Each app contributes a router."""

from ninja import NinjaAPI

api = NinjaAPI(
    title="ByteSpike management API",
    version="1",
    urls_namespace="api",
)
