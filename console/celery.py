"""The Celery application; configuration comes from Django settings (``CELERY_*``)."""

import functools
import logging
import os

from celery import Celery, signals
from celery.contrib.django.task import DjangoTask
from celery.worker.consumer import Consumer as CeleryConsumer
from django.db import transaction

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

logger = logging.getLogger(__name__)


class Task(DjangoTask):
    def delay_on_commit(self, *args, **kwargs) -> None:
        # A broker that is down must not fail the request whose work already committed: the
        # error is logged, and every job has a safety net that enqueues it again later (the task
        # reaper, the callback resender; an invitation can be resent).
        transaction.on_commit(functools.partial(self.delay, *args, **kwargs), robust=True)


class Consumer(CeleryConsumer):
    """Celery's consumer, made to survive a Redis broker that restarts.

    On a lost connection Celery 5.7 collects it, which leaves its kombu transport without the
    connection settings (``client = None``), and then closes it. kombu's Redis channels of that
    connection still need those settings: to restore the messages not yet acknowledged when
    closing, and to acknowledge the tasks still running when they end (acks_late). Both raised
    AttributeError, which Celery takes as unrecoverable: the worker exited when Redis restarted
    (benchmarks/soak.py). Here the close failing is logged, and the old transport gets its
    settings back, so late acknowledgements reach Redis again (or fail as connection errors,
    which Celery logs). Messages lost with Redis are revived by the task reaper.
    """

    def on_connection_error_after_connected(self, exc):
        transport = getattr(self.connection, "_transport", None)
        client = getattr(transport, "client", None)
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError:
            logger.warning("closing the lost broker connection failed; reconnecting", exc_info=True)
        finally:
            if transport is not None and transport.client is None:
                transport.client = client


app = Celery("bytespike", task_cls=Task)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.worker_consumer = f"{__name__}:Consumer"
# Each app keeps its Celery jobs in jobs.py ("task" is the product's async Task).
app.autodiscover_tasks(related_name="jobs")


@signals.worker_init.connect
@signals.beat_init.connect
def _start_tracing(**_) -> None:
    """Workers and beat trace their jobs when an OTLP endpoint is set (core/tracing.py); web
    processes start theirs in console/asgi.py."""
    from core import tracing

    tracing.setup()
