"""URL map: console pages at the root, auth under /auth/, staff admin under /admin/."""

from django.contrib import admin
from django.urls import include, path

from console import health, metrics, operations, views
from console.api import api, unknown_route
from generation.files import serve_file

console_patterns = (
    [
        path("", views.dashboard, name="dashboard"),
        path("operations/", operations.operations, name="operations"),
    ],
    "console",
)

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("generation.dataplane.urls")),
    path("api/v1/", api.urls),
    path("api/v1", unknown_route),  # not redirected to /api/v1/: any method gets the JSON 404
    path("files/<str:token>", serve_file, name="file"),
    path("auth/", include("allauth.urls")),
    path("", include("accounts.urls")),
    path("", include("keys.urls")),
    path("", include("generation.urls")),
    path("", include("billing.urls")),
    path("", include("alerts.urls")),
    path("", include(console_patterns)),
]
