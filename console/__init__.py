"""The ByteSpike Django project: settings, URLs, ASGI entry point, Celery app and console shell."""

from .celery import app as celery_app

__all__ = ["celery_app"]
