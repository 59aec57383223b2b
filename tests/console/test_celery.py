"""The Celery application's own pieces."""

from unittest import mock

from celery.utils.imports import symbol_by_name
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Connection

from console.celery import Consumer, app


def test_workers_use_the_consumer_that_survives_a_broker_restart():
    assert symbol_by_name(app.conf.worker_consumer) is Consumer


def test_a_lost_redis_connection_does_not_end_the_worker():
    # What Celery 5.7 does with a lost connection: collect it (its transport forgets the
    # connection settings), close it, and kombu's Redis channel, restoring unacknowledged
    # messages without settings, raises AttributeError: the worker exited when Redis restarted
    # (the soak), and so it did when a task still running acknowledged its message later.
    consumer = Consumer.__new__(Consumer)
    consumer.connection = lost = Connection("redis://127.0.0.1:6379/9")
    transport = lost.transport  # made, not connected

    def celerys(self, exc):
        consumer.connection = None
        lost.collect()
        assert transport.client is None
        raise AttributeError("'NoneType' object has no attribute 'hostname'")

    # A mocked logger, not caplog: under xdist another test may have reconfigured logging.
    with (
        mock.patch.object(CeleryConsumer, "on_connection_error_after_connected", celerys),
        mock.patch("console.celery.logger") as logger,
    ):
        consumer.on_connection_error_after_connected(ConnectionError("closed by server"))
    assert "reconnecting" in logger.warning.call_args.args[0]
    # The old channels can still reach Redis to acknowledge the tasks that were running.
    assert transport.client is lost
