"""Database work from async code.

In a web process it runs on a small pool of threads, each keeping its database connection
(a pooled PostgreSQL connection, or its own SQLite connection) for as long as it lives: a call
costs one thread hop and no connection set-up. A connection that failed is closed, so the next
call opens a new one. In tests (``use_test_thread``) it runs on the thread that drives the event
loop, whose connection holds the test's transaction.
"""

import asyncio
import concurrent.futures
import contextvars

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connections

from core import logs


def _threads() -> int:
    """Up to 4, leaving half of a PostgreSQL pool to the rest of the process."""
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    return 4 if not pool else max(1, min(4, pool["max_size"] // 2))


# In-process tests turn this on (tests/conftest.py).
use_test_thread = False
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _in_thread(function, args, kwargs):
    try:
        return function(*args, **kwargs)
    except DatabaseError:
        for connection in connections.all(initialized_only=True):
            if connection.connection is not None and not connection.is_usable():
                connection.close()
        raise


async def run_db(function, *args, **kwargs):
    """Run ``function`` (database work) off the event loop and return what it returns."""
    if use_test_thread:
        call = sync_to_async(function, thread_sensitive=True)
        # A context of its own (asgiref then runs it on the thread holding the test's
        # transaction), with the request's log fields only.
        task = asyncio.get_running_loop().create_task(
            call(*args, **kwargs), context=logs.fresh_context()
        )
        return await task
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(_threads(), thread_name_prefix="db")
    # In the request's context: lines logged there, and jobs published there, carry its id.
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(
        _executor, context.run, _in_thread, function, args, kwargs
    )
