"""Console pages for async tasks: the live task card, the tasks list and a task's detail page.

Every read goes through ``task_get_for_member``/``tasks_visible_to``, scoped to the current
account and, for developers and viewers, to the projects they belong to (a task is its key's):
another account's task, or one of a key in a project they are not in, is a 404. A card or row
of a task that is not terminal polls itself (``hx-get`` + ``hx-trigger="every 2s"`` +
``hx-swap="outerHTML"``); once the task is terminal the server renders it without the trigger
and answers 286, which stops htmx polling.
Cancelling goes through ``services.task_cancel``, the same compare-and-set the API uses.

Who may cancel follows the task's key (``permissions.can_manage_task``): a developer cancels
the tasks of keys they created, admins and owners any task; anyone else is refused with a 403,
as when they edit such a key. Owners, admins and finance see every task of the account.
"""

import json
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING, push_url, trigger_client_event

from accounts.decorators import account_view
from accounts.models import Account
from accounts.permissions import ALL_PROJECTS, USE_PLAYGROUND, can_manage_task
from catalogue.models import AIModel
from generation import services
from generation.files import artifact_path, retention_text
from generation.models import CallbackAttempt, CallbackDelivery, Task, TaskStatus
from generation.task_objects import task_object
from keys.selectors import api_keys_visible_to

PAGE_SIZE = 25
CARD = "generation/task_card.html"
LIST = "generation/tasks.html"
DETAIL = "generation/task_detail.html"
FILTERS = ("status", "model", "key")


# --- Reads, scoped to the account ------------------------------------------------------------


def tasks_for_account(account: Account) -> QuerySet[Task]:
    """Newest first, with what a row shows."""
    return Task.objects.filter(account=account).select_related("model", "api_key")


def tasks_visible_to(membership) -> QuerySet[Task]:
    """The account's tasks for owners, admins and finance; for developers and viewers those of
    keys in their projects (tasks follow their key, as keys do)."""
    tasks = tasks_for_account(membership.account)
    if membership.can(ALL_PROJECTS):
        return tasks
    return tasks.filter(api_key__project_id__in=membership.project_ids())


def task_get_for_member(*, membership, public_id: str) -> Task:
    task = tasks_visible_to(membership).filter(public_id=public_id).first()
    if task is None:
        raise Http404("No such task.")
    return task


def tasks_recent_for_member(membership, limit: int = 5) -> list["TaskView"]:
    return [present_task(task) for task in tasks_visible_to(membership)[:limit]]


# --- Presentation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    kind: str
    url: str
    mime_type: str
    width: int
    height: int
    duration_seconds: float | None
    expires_at: datetime
    expired: bool  # its file was deleted (or is about to be): the link answers 410


def seconds_text(seconds: float | None) -> str:
    """12 s, 2 min 5 s, 1 h 3 min."""
    if seconds is None:
        return ""
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


@dataclass(frozen=True)
class TaskView:
    """A task as its row, its card and its page show it: prompt, times, credits, key, files."""

    task: Task
    prompt: str
    elapsed_text: str
    estimated_text: str
    credits: int  # what it cost once it ended; until then the estimate held
    key_name: str
    announcement: str  # what screen readers are told when the task changes
    outputs: tuple[Output, ...] = ()  # on the card only, once the task completed
    can_cancel: bool = False  # on the card only: whether the viewer may cancel the task


def present_task(task: Task) -> TaskView:
    """The task as a row shows it: without its files, or what the viewer may do with it."""
    params = task.params if isinstance(task.params, dict) else {}
    end = task.completed_at if task.is_terminal and task.completed_at else timezone.now()
    return TaskView(
        task=task,
        prompt=params.get("prompt", ""),
        elapsed_text=seconds_text(max((end - task.created_at).total_seconds(), 0)),
        estimated_text=seconds_text(task.estimated_seconds) if task.estimated_seconds else "",
        credits=task.credits_used if task.is_terminal else task.estimated_credits,
        key_name=task.api_key.name if task.api_key_id and task.api_key else "",
        announcement=f"{task.model.display_name} task {task.get_status_display().lower()}.",
    )


def _outputs(task: Task) -> tuple[Output, ...]:
    if task.status != TaskStatus.COMPLETED:
        return ()
    now = timezone.now()
    return tuple(
        Output(
            kind=artifact.kind,
            url=artifact_path(artifact),
            mime_type=artifact.mime_type,
            width=artifact.width,
            height=artifact.height,
            duration_seconds=artifact.duration_seconds,
            expires_at=artifact.expires_at,
            expired=not artifact.file or artifact.expires_at <= now,
        )
        for artifact in task.artifacts.all()
    )


def present_task_card(task: Task, membership) -> TaskView:
    """The task as its card shows it: with its files, and whether ``membership`` may cancel it."""
    return replace(
        present_task(task),
        outputs=_outputs(task),
        can_cancel=can_manage_task(membership, task),
    )


def render_card(request, task: Task, *, status: int | None = None):
    """The card; 286 once the task is terminal, so a polling card stops."""
    shown = present_task_card(task, request.membership)
    if status is None:
        status = HTMX_STOP_POLLING if task.is_terminal else 200
    return render(request, CARD, {"task_view": shown}, status=status)


# --- The card --------------------------------------------------------------------------------


@require_GET
@account_view()
def task_card(request, task_id: str):
    task = task_get_for_member(membership=request.membership, public_id=task_id)
    return render_card(request, task)


@require_POST
@account_view(USE_PLAYGROUND)
def task_cancel(request, task_id: str):
    """Cancel (idempotent), then show the card again: terminal, so it no longer polls."""
    task = task_get_for_member(membership=request.membership, public_id=task_id)
    if not can_manage_task(request.membership, task):
        raise PermissionDenied(
            "Only the creator of the task's key, admins and owners can cancel it."
        )
    was_terminal = task.is_terminal
    task = services.task_cancel(task)
    if not request.htmx:
        return redirect("generation:task-detail", task_id=task.public_id)
    response = render_card(request, task, status=200)
    if was_terminal:
        notice = f"The task had already {task.get_status_display().lower()}."
    else:
        notice = f"Task {task.get_status_display().lower()}."
    return trigger_client_event(response, "announce", {"message": notice})


# --- The list --------------------------------------------------------------------------------


def _filters(request) -> dict[str, str]:
    """The filters that have a value, in a fixed order (stable URLs); unknown statuses drop."""
    values = {name: request.GET.get(name, "").strip() for name in FILTERS}
    if values["status"] not in TaskStatus.values:
        values["status"] = ""
    return {name: value for name, value in values.items() if value}


def _url(params: dict) -> str:
    query = urlencode(params)
    return reverse("generation:tasks") + (f"?{query}" if query else "")


def _list_context(request) -> dict:
    account = request.account
    filters = _filters(request)
    tasks = tasks_visible_to(request.membership)
    if "status" in filters:
        tasks = tasks.filter(status=filters["status"])
    if "model" in filters:
        tasks = tasks.filter(model__slug=filters["model"])
    if "key" in filters:
        tasks = tasks.filter(api_key__public_id=filters["key"])
    page = Paginator(tasks, PAGE_SIZE).get_page(request.GET.get("page"))

    def page_url(number: int) -> str:
        return _url({**filters, "page": number} if number > 1 else filters)

    return {
        "page": page,
        "rows": [present_task(task) for task in page],
        "filters": filters,
        "url": page_url(page.number),
        "statuses": TaskStatus.choices,
        "models": AIModel.objects.filter(tasks__account=account).distinct().order_by("slug"),
        "keys": api_keys_visible_to(request.membership).order_by("name"),
        "previous_url": page_url(page.previous_page_number()) if page.has_previous() else "",
        "next_url": page_url(page.next_page_number()) if page.has_next() else "",
    }


@require_GET
@account_view()
def tasks(request):
    """Recent tasks, filtered by status, model and key (in the URL), 25 a page."""
    context = _list_context(request)
    if request.htmx and request.htmx.target == "tasks-list":
        # The address bar gets the filters that are set, not the form's empty fields.
        return push_url(render(request, f"{LIST}#tasks-list", context), context["url"])
    return render(request, LIST, context)


@require_GET
@account_view()
def task_row(request, task_id: str):
    """One row of the list, polled while the task is not terminal."""
    task = task_get_for_member(membership=request.membership, public_id=task_id)
    status = HTMX_STOP_POLLING if task.is_terminal else 200
    return render(request, f"{LIST}#task-row", {"row": present_task(task)}, status=status)


# --- The detail page -------------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    at: object
    title: str
    detail: str = ""
    tone: str = ""


@dataclass(frozen=True)
class TaskDelivery:
    """A callback delivery of the task with its attempts, for the timeline and the table."""

    delivery: CallbackDelivery
    attempts_oldest_first: tuple[CallbackAttempt, ...]

    @property
    def last_attempt(self) -> CallbackAttempt | None:
        return self.attempts_oldest_first[-1] if self.attempts_oldest_first else None


def _timeline(shown: TaskView, deliveries: list[TaskDelivery]) -> list[Moment]:
    task = shown.task
    moments = [
        Moment(
            task.created_at,
            "Submitted",
            f"with the key {shown.key_name}" if shown.key_name else "",
        )
    ]
    if task.started_at:
        moments.append(Moment(task.started_at, "Started", "a worker claimed it"))
    if task.is_terminal and task.completed_at:
        tone = {"completed": "good", "failed": "bad"}.get(task.status, "")
        detail = ""
        if task.status == TaskStatus.FAILED and task.error:
            detail = task.error.get("message", "")
        moments.append(Moment(task.completed_at, task.get_status_display(), detail, tone))
    for delivery in deliveries:
        for attempt in delivery.attempts_oldest_first:
            detail = attempt.error or (
                f"answered {attempt.status_code} in {attempt.duration_ms} ms"
            )
            ok = attempt.status_code is not None and 200 <= attempt.status_code < 300
            title = "Callback redelivered" if attempt.manual else "Callback attempt"
            moments.append(Moment(attempt.attempted_at, title, detail, "good" if ok else "bad"))
    return sorted(moments, key=lambda moment: moment.at)


@require_GET
@account_view()
def task_detail(request, task_id: str):
    task = task_get_for_member(membership=request.membership, public_id=task_id)
    shown = present_task_card(task, request.membership)
    deliveries = [
        TaskDelivery(delivery, tuple(delivery.attempt_log.all()))
        for delivery in task.deliveries.prefetch_related(
            Prefetch("attempt_log", queryset=CallbackAttempt.objects.order_by("attempted_at", "id"))
        )
    ]
    context = {
        "task_view": shown,
        "params": json.dumps(task.params, indent=2, ensure_ascii=False, sort_keys=True),
        "task_json": json.dumps(
            task_object(task, request.build_absolute_uri("/")), indent=2, ensure_ascii=False
        ),
        "timeline": _timeline(shown, deliveries),
        "deliveries": deliveries,
        "media_retention": retention_text(),
    }
    return render(request, DETAIL, context)
