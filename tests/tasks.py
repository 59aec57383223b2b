"""Tasks driven as a worker drives them, on the media sandbox's clock: a sandbox video job is
queued, runs and completes as that clock says, so a test moves it on instead of waiting."""

from dataclasses import dataclass

from generation import services
from generation.models import Task


@dataclass
class SandboxClock:
    """Unix time as the media sandbox reads it (``sandbox_media._now``), moved by hand; the
    ``sandbox_clock`` fixture installs one."""

    now: float = 1_800_000_000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_until_done(
    task: Task, clock: SandboxClock, *, step: float = 0.1, steps: int = 200, after_step=None
) -> Task:
    """Drive a task as the worker would until it is terminal (or ``steps`` steps are done),
    moving the sandbox's clock on ``step`` seconds after each step; ``after_step(task)`` runs
    after each step, before the clock moves."""
    for _ in range(steps):
        if task.is_terminal:
            break
        services.task_advance(task.pk, task.lease)
        task.refresh_from_db()
        if after_step is not None:
            after_step(task)
        clock.advance(step)
    return task
