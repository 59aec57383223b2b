"""Liveness and readiness probes for load balancers and orchestrators (JSON, no login)."""

import os

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from console.celery import app as celery_app


def _database() -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return None


def _broker() -> str | None:
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        return None if os.access(settings.BROKER_DIR, os.W_OK) else "broker folder not writable"
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    return None


def _cache() -> str | None:
    cache.set("readyz", "ok", 5)
    return None if cache.get("readyz") == "ok" else "cache did not keep a value"


CHECKS = {"database": _database, "broker": _broker, "cache": _cache}


@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request):
    results = {}
    for name, check in CHECKS.items():
        try:
            problem = check()
        except Exception as error:  # any failure means "not ready"; say which kind
            problem = type(error).__name__
        results[name] = "ok" if problem is None else f"error: {problem}"
    ready = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
    )
