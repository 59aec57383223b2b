"""The Celery application; configuration comes from Django settings (``CELERY_*``)."""

import functools
import os

from celery import Celery
from celery.contrib.django.task import DjangoTask
from django.db import transaction

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")


class Task(DjangoTask):
    def delay_on_commit(self, *args, **kwargs) -> None:
        # A broker that is down must not fail the request whose work already committed: the
        # error is logged, and every job has a safety net that enqueues it again later (the task
        # reaper, the callback resender; an invitation can be resent).
        transaction.on_commit(functools.partial(self.delay, *args, **kwargs), robust=True)


app = Celery("bytespike", task_cls=Task)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
