"""Reads of tasks."""

import functools
from dataclasses import dataclass

from django.db import connection

from billing.services import WalletState
from catalogue.models import AIModel
from generation.models import Task


def task_for_account(*, account_id: int, task_id: str = "", out_task_id: str = ""):
    """The account's task by public id or out_task_id; None for anyone else's (a 404)."""
    from generation.models import Task

    tasks = Task.objects.select_related("model", "api_key").filter(account_id=account_id)
    if task_id:
        return tasks.filter(public_id=task_id).first()
    if out_task_id:
        return tasks.filter(out_task_id=out_task_id).first()
    return None


@dataclass(frozen=True)
class TaskPoll:
    """A task as a poll sees it, with its account's wallet and its key's spend so far."""

    task: Task
    wallet: WalletState
    key_spent: int


# One statement, written out and read without a queryset: a poll is the API's hottest read
# (apps poll every few seconds per task), and building it through the ORM cost more CPU than
# everything else a poll does. The model is joined for its slug; wallet and key total may be
# missing (never funded, never spent). Only the columns a task object shows: the rest (params,
# output) are JSON that a poll would parse for nothing.
_POLL_FIELDS = (
    "id", "public_id", "model_id", "out_task_id", "status", "progress", "estimated_credits",
    "estimated_seconds", "credits_used", "error", "created_at", "started_at", "completed_at",
)  # fmt: skip
_POLL_SQL = """
    SELECT t.id, t.public_id, t.model_id, t.out_task_id, t.status, t.progress,
           t.estimated_credits, t.estimated_seconds, t.credits_used, t.error,
           t.created_at, t.started_at, t.completed_at,
           m.slug, w.balance, w.held, kt.credits
    FROM generation_task t
    JOIN catalogue_aimodel m ON m.id = t.model_id
    LEFT JOIN billing_wallet w ON w.account_id = t.account_id
    LEFT JOIN billing_keytotal kt ON kt.api_key_id = %s
    WHERE t.account_id = %s AND t.{column} = %s
"""


@functools.cache
def _poll_converters(vendor: str) -> list[tuple]:
    """Per polled column, the database's and the field's converters (as the ORM applies them:
    SQLite's datetimes made aware, JSON parsed)."""
    # Model.from_db takes the loaded fields' values in the model's field order.
    order = [f.attname for f in Task._meta.concrete_fields if f.attname in _POLL_FIELDS]
    assert tuple(order) == _POLL_FIELDS, "list _POLL_FIELDS in Task's field order"
    out = []
    for name in _POLL_FIELDS:
        field = Task._meta.get_field(name.removesuffix("_id") if name == "model_id" else name)
        column = field.get_col(Task._meta.db_table)
        out.append(
            (column, connection.ops.get_db_converters(column) + field.get_db_converters(connection))
        )
    return out


def task_poll(
    *, account_id: int, key_id: int | None, task_id: str = "", out_task_id: str = ""
) -> TaskPoll | None:
    """The account's task by public id or out_task_id, in one read; None for anyone else's."""
    column, value = ("public_id", task_id) if task_id else ("out_task_id", out_task_id)
    if not value:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_POLL_SQL.format(column=column), [key_id, account_id, value])
        row = cursor.fetchone()
    if row is None:
        return None
    fields, extra = row[: len(_POLL_FIELDS)], row[len(_POLL_FIELDS) :]
    values = []
    for value, (expression, converters) in zip(
        fields, _poll_converters(connection.vendor), strict=True
    ):
        for convert in converters:
            value = convert(value, expression, connection)
        values.append(value)
    task = Task.from_db(connection.alias, _POLL_FIELDS, values)
    slug, balance, held, key_spent = extra
    task.model = AIModel(pk=task.model_id, slug=slug)
    return TaskPoll(task, WalletState(balance or 0, held or 0), key_spent or 0)


def tasks_unfinished() -> dict[str, tuple[int, float]]:
    """Tasks waiting for a worker (pending) or running, every account's: (how many, age in
    seconds of the oldest; 0 when none). For operators: the metrics scrape and the operations
    page."""
    from django.db.models import Count, Min
    from django.utils import timezone

    from generation.models import TaskStatus

    unfinished = (TaskStatus.PENDING, TaskStatus.RUNNING)
    found = {
        row["status"]: row
        for row in Task.objects.filter(status__in=unfinished)
        .order_by()
        .values("status")
        .annotate(count=Count("id"), since=Min("created_at"))
    }
    now = timezone.now()
    return {
        status: (found[status]["count"], (now - found[status]["since"]).total_seconds())
        if status in found
        else (0, 0.0)
        for status in unfinished
    }
