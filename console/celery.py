"""The Celery application; configuration comes from Django settings (``CELERY_*``)."""

import functools
import logging
import os

from celery import Celery, signals
from celery.contrib.django.task import DjangoTask
from celery.worker.consumer import Consumer as CeleryConsumer
from django.db import transaction

from core import logs

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


# --- Log context ------------------------------------------------------------------------------
# A job published while a request runs carries the request's id in a message header, and the
# worker logs the job's lines with it (docs/operations.md#logs). Jobs about a task bind the
# task's own submit request id as well (generation/services.py), whoever published them.

REQUEST_ID_HEADER = "bytespike_request_id"


@signals.before_task_publish.connect
def _send_request_id(headers=None, **kwargs) -> None:
    request_id = logs.request_id()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@signals.task_prerun.connect
def _bind_request_id(task=None, **kwargs) -> None:
    logs.clear()
    fields = {"job": task.name} if task is not None else {}
    request_id = getattr(task.request, REQUEST_ID_HEADER, None) if task is not None else None
    if request_id:
        fields["request_id"] = request_id
    logs.bind(**fields)


@signals.task_postrun.connect
def _unbind_request_id(**kwargs) -> None:
    logs.clear()
