"""Verified inference keys, remembered in this process's memory: a call pays no cache round trip
for its key.

Revoking, rolling, pausing or editing a key forgets it here at once, and tells every other web
process through Redis pub/sub (``publish_forget``), where a listener forgets it too. An entry
lives ``BYTESPIKE_KEY_CACHE_SECONDS`` (60 with Redis); while a process's listener is not
subscribed (starting, Redis down) its entries live at most a second, and without Redis (one
web process, the embedded default) 0.5 s: a change reaches every process within a second.
"""

import asyncio
import contextvars
import logging
import time

from django.conf import settings

from core import metrics

logger = logging.getLogger(__name__)

MISSING = object()
UNKNOWN_SECONDS = 1.0  # a digest no key has (guessing, a deleted key)
UNHEARD_SECONDS = 1.0  # the longest an entry lives while changes cannot be heard
MAX_ENTRIES = 100_000

# In-process tests turn this off (tests/conftest.py): a listener would outlive the event loop of
# the request that started it. Changes made in the process are forgotten here directly anyway.
listening_enabled = True


def channel() -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX") or settings.BYTESPIKE_CACHE_PREFIX
    return f"{prefix}:apikeys:forget"


class KeyCache:
    def __init__(self):
        self._entries: dict[str, tuple[float, object]] = {}
        self._listeners: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
        self.subscribed = False

    def get(self, digest: str):
        """The principal (None: no such key), or MISSING."""
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            metrics.KEY_CACHE_MISS.inc()
            return MISSING
        metrics.KEY_CACHE_HIT.inc()
        return entry[1]

    def put(self, digest: str, principal) -> None:
        seconds = settings.BYTESPIKE_KEY_CACHE_SECONDS
        if settings.REDIS_URL and not self.subscribed:
            seconds = min(seconds, UNHEARD_SECONDS)
        if principal is None:
            seconds = min(seconds, UNKNOWN_SECONDS)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + seconds, principal)

    def forget(self, digests) -> None:
        for digest in digests:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        self._entries.clear()

    def listen(self) -> None:
        """Start this event loop's listener for other processes' changes (with Redis)."""
        if not (settings.REDIS_URL and listening_enabled):
            return
        loop = asyncio.get_running_loop()
        if loop not in self._listeners:
            self._listeners[loop] = loop.create_task(self._listen(), context=contextvars.Context())

    async def _listen(self) -> None:
        import redis.asyncio

        while True:
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(channel())
                    # Whatever changed while this process was not listening is forgotten.
                    self.clear()
                    self.subscribed = True
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self.forget(message["data"].decode().split(","))
            except Exception:
                logger.warning("key change listener lost Redis; retrying", exc_info=True)
            finally:
                # Entries cached while subscribed live long; unheard from now on, they must not.
                self.subscribed = False
                self.clear()
                await client.aclose()
            await asyncio.sleep(1.0)


cache = KeyCache()


def publish_forget(digests) -> None:
    """Forget these keys here, and tell the other web processes to (after the change commits)."""
    digests = list(digests)
    cache.forget(digests)
    if not settings.REDIS_URL:
        return
    import redis

    try:
        with redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2) as client:
            client.publish(channel(), ",".join(digests))
    except Exception:
        # Other processes' entries live at most BYTESPIKE_KEY_CACHE_SECONDS.
        logger.warning("could not announce a key change", exc_info=True)
