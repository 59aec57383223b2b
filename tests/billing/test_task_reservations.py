"""The metering engine gives back a task's reservation against its key's limits once the task
has ended, with what it cost: it learns that from the task's hold (billing's own books), which
the task's end settles or releases."""

import pytest

from billing.holds import hold_place, hold_release, hold_settle
from billing.metering.engine import _ended_tasks
from billing.usage import UsageFacts
from tests.factories import AIModelFactory, fund

pytestmark = pytest.mark.django_db
M = 1_000_000
NOW = 1_800_000_000


def test_a_reservation_ends_with_its_tasks_hold(world):
    fund(world.account, 10)
    model = AIModelFactory(family="video")
    usage = UsageFacts(model_id=model.pk, family="video", protocol="openai", seconds=4)
    for reference in ("task_done", "task_failed", "task_running"):
        hold_place(account_id=world.account.pk, reference=reference, amount=3 * M)
    hold_settle(reference="task_done", charge=2 * M, usage=usage)
    hold_release(reference="task_failed")

    ended = _ended_tasks(
        {
            "task_done": NOW - 60,
            "task_failed": NOW - 60,
            "task_running": NOW - 60,
            "task_lost": NOW - 600,  # its submit never committed: ends, free
            "task_submitting": NOW,  # still being submitted: left alone
        },
        submitted_before=NOW - 300,
    )

    assert ended == {"task_done": 2 * M, "task_failed": 0, "task_lost": 0}
