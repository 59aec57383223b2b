"""A fixed-window counter in the shared cache, for actions that need a ceiling (key creation).

Login, sign-up and password reset are limited by django-allauth; this covers the rest.
"""

import logging
import time

from django.core.cache import cache

logger = logging.getLogger(__name__)


def allow(scope: str, ident, *, limit: int, period: int) -> bool:
    """Count one event for ``ident``; False once more than ``limit`` happened this window."""
    window = int(time.time() // period)
    key = f"ratelimit:{scope}:{ident}:{window}"
    try:
        count = 1 if cache.add(key, 1, period + 1) else cache.incr(key)
    except Exception:  # a cache that is down must not lock people out
        logger.warning("rate limit cache unavailable", exc_info=True)
        return True
    return count <= limit
