"""Live task updates across processes, for the SSE stream.

Whoever changes a task (a worker, a cancel) publishes its id once the change commits; a stream
waits for that or for a timeout, then reads the task again. With Redis (``REDIS_URL``) the notice
crosses processes at once; without it (the embedded default) streams simply re-read the task
every half second. Either way a stream holds no database connection while it waits.
"""

import asyncio
import contextlib
import logging

from django.conf import settings

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
_publisher = None


def _channel(public_id: str) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX") or "bytespike"
    return f"{prefix}:task:{public_id}"


def publish(public_id: str) -> None:
    """Best effort: a stream that misses a notice still re-reads the task within seconds."""
    global _publisher
    if not settings.REDIS_URL:
        return
    try:
        if _publisher is None:
            import redis

            _publisher = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        _publisher.publish(_channel(public_id), "changed")
    except Exception:
        logger.warning("could not publish a task change", exc_info=True)


class Listener:
    """Waits for changes to one task (``async with Listener(public_id) as listener``)."""

    def __init__(self, public_id: str):
        self.public_id = public_id
        self.pubsub = None
        self.client = None

    async def __aenter__(self):
        if settings.REDIS_URL:
            try:
                import redis.asyncio

                self.client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
                self.pubsub = self.client.pubsub()
                await self.pubsub.subscribe(_channel(self.public_id))
            except Exception:
                logger.warning("live updates fall back to polling", exc_info=True)
                await self._close()
        return self

    async def wait(self, timeout: float) -> None:
        """Until the task may have changed: a notice, or at most ``timeout`` seconds.

        With Redis the task is still re-read every few seconds in case a notice was lost."""
        if self.pubsub is None:
            await asyncio.sleep(min(timeout, POLL_SECONDS))
            return
        deadline = asyncio.get_running_loop().time() + min(timeout, 5.0)
        while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                message = await self.pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=remaining
                )
            except Exception:
                logger.warning("live updates fall back to polling", exc_info=True)
                await self._close()
                await asyncio.sleep(min(remaining, POLL_SECONDS))
                return
            if message is not None:
                return

    async def _close(self):
        if self.pubsub is not None:
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.aclose()
        self.pubsub = self.client = None

    async def __aexit__(self, *exc):
        await self._close()
