"""The holds a web process keeps alive: every quarter of ``BYTESPIKE_HOLD_STALE_SECONDS``, a
thread of the process renews the holds of its running calls and its leases, and another releases
the holds nobody renewed for that long (those of a process that died), as beat does too. Two
threads, so that renewing never waits behind a long sweep: a process busy releasing a dead
one's holds must not let its own go stale."""

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connections

from billing import holds
from billing.metering.engine import meter

logger = logging.getLogger(__name__)

# In-process tests turn this off (tests/conftest.py): the threads would write to the test
# database behind their backs. Tests of renewal run real web processes or call these directly.
renewals_enabled = True


def renew() -> int:
    """Renew this process's holds; how many. Leases stay spendable in memory only while their
    renewals land (billing/metering/leases.py)."""
    asked = time.monotonic()
    renewed = holds.holds_renew(references=meter.live_references())
    meter.leases.renewed(renewed, at=asked)
    return len(renewed)


def sweep() -> int:
    """Release holds nobody renewed for ``BYTESPIKE_HOLD_STALE_SECONDS``; how many."""
    stale = timedelta(seconds=settings.BYTESPIKE_HOLD_STALE_SECONDS)
    return holds.holds_release_stale(older_than=stale)


def _every_quarter(job, name: str) -> threading.Thread:
    def loop():
        while True:
            time.sleep(settings.BYTESPIKE_HOLD_STALE_SECONDS / 4)
            try:
                job()
            except Exception:  # the database may be restarting: try again next time
                logger.warning("%s failed; trying again", name, exc_info=True)
            finally:
                connections.close_all()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


def start_renewals() -> list[threading.Thread]:
    """Renew and sweep in daemon threads, for as long as the web process lives."""
    if not renewals_enabled:
        return []
    return [_every_quarter(renew, "hold-renewals"), _every_quarter(sweep, "hold-sweeper")]
