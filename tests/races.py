"""Races with real threads: each thread has its own database connection and transaction."""

import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import connections


def race(worker, count: int) -> list:
    """Run ``worker(i)`` in ``count`` threads released at the same moment; each result, or the
    exception it raised (the outcome is what a test inspects)."""
    start = threading.Barrier(count)

    def run(i):
        try:
            start.wait()
            return worker(i)
        except Exception as error:
            return error
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))
