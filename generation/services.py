"""Every write to async tasks: submit, the worker's steps, cancel, and the reaper.

A task's hold is placed at submit (its estimated credits) and closed exactly once at its
terminal state: settled with the actual cost when completed, or by the refund policy when
cancelled while running; released when it failed or was cancelled while pending. Terminal
transitions are compare-and-set UPDATEs on the status, so whoever wins (worker, cancel, reaper)
is the only one that touches the money. Upstream calls happen outside any transaction.
"""

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing import metering, pricing
from billing.metering import meter
from billing.usage import UsageFacts
from catalogue.models import AIModel, Family, RefundPolicy
from core import logs, metrics
from core.db import run_db
from core.errors import ApiError
from generation.failover import first_answer
from generation.files import StorageUnavailable
from generation.models import Task, TaskStatus
from generation.providers import UpstreamError, media
from generation.routing import Target, Upstream, upstreams_of

logger = logging.getLogger(__name__)
# One line per transition (docs/operations.md#logs), logged once the transition commits.
transitions = logs.get_logger("bytespike.tasks")

PROMPT_MAX = 4000
POLL_MIN_SECONDS = 1.0
POLL_MAX_SECONDS = 30.0  # far below the broker's visibility timeout
OVERDUE_GRACE = timedelta(seconds=60)


def stale_after() -> timedelta:
    """No worker has looked at a task for this long: the reaper revives it."""
    return timedelta(seconds=settings.BYTESPIKE_TASK_STALE_SECONDS)


class TaskError(ApiError):
    """A refused task request (bad params, a reused out_task_id). A refusal of the wallet or a
    limit is billing's own ``BillingError``, raised as is."""


def _invalid(message: str, param: str) -> TaskError:
    return TaskError(400, "invalid_param", message, param)


# --- Parameters ------------------------------------------------------------------------------

VIDEO_PARAMS = {"prompt", "duration", "seconds", "aspect_ratio", "size", "seed", "negative_prompt"}
IMAGE_PARAMS = {"prompt", "n", "size", "quality", "output_format", "seed", "aspect_ratio"}
QUALITIES = ("auto", "low", "medium", "high", "standard", "hd")
OUTPUT_FORMATS = ("png", "jpeg", "webp")


def _int(params: dict, name: str, *, minimum: int, maximum: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(f"'{name}' must be an integer.", f"params.{name}")
    if not minimum <= value <= maximum:
        raise _invalid(f"'{name}' must be between {minimum} and {maximum}.", f"params.{name}")
    return value


def _choice(params: dict, name: str, allowed, default=None):
    value = params.get(name, default)
    if value is None:
        return None
    if allowed and value not in allowed:
        raise _invalid(
            f"'{name}' must be one of: {', '.join(map(str, allowed))}.", f"params.{name}"
        )
    return value


def validate_params(model: AIModel, params) -> dict:
    """Check a task's params against the model; the normalised params, or TaskError."""
    if not isinstance(params, dict):
        raise _invalid("'params' must be an object.", "params")
    allowed = VIDEO_PARAMS if model.family == Family.VIDEO else IMAGE_PARAMS
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise _invalid(
            f"Unknown parameter '{unknown[0]}' for {model.slug}; it takes: "
            f"{', '.join(sorted(allowed))}.",
            f"params.{unknown[0]}",
        )
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _invalid("A 'prompt' is required.", "params.prompt")
    if len(prompt) > PROMPT_MAX:
        raise _invalid(f"The prompt is over {PROMPT_MAX} characters.", "params.prompt")
    clean: dict = {"prompt": prompt}
    seed = _int(params, "seed", minimum=0, maximum=2**31 - 1)
    if seed is not None:
        clean["seed"] = seed
    if model.family == Family.VIDEO:
        if "duration" in params and "seconds" in params:
            raise _invalid("Give 'duration' or 'seconds', not both.", "params.seconds")
        name = "seconds" if "seconds" in params else "duration"
        duration = _int(params, name, minimum=1, maximum=600)
        durations = [int(d) for d in model.durations]
        if duration is None:
            duration = durations[0] if durations else 5
        elif durations and duration not in durations:
            raise _invalid(
                f"{model.slug} makes videos of {', '.join(map(str, durations))} seconds.",
                f"params.{name}",
            )
        clean["duration"] = duration
        clean["aspect_ratio"] = _choice(
            params, "aspect_ratio", model.aspect_ratios,
            model.aspect_ratios[0] if model.aspect_ratios else None,
        )  # fmt: skip
        if params.get("size") is not None:
            clean["size"] = _choice(params, "size", model.sizes)
        if params.get("negative_prompt") is not None:
            if not isinstance(params["negative_prompt"], str):
                raise _invalid("'negative_prompt' must be text.", "params.negative_prompt")
            clean["negative_prompt"] = params["negative_prompt"][:PROMPT_MAX]
        return {k: v for k, v in clean.items() if v is not None}
    clean["n"] = _int(params, "n", minimum=1, maximum=max(model.max_images, 1)) or 1
    clean["size"] = _choice(params, "size", model.sizes, model.sizes[0] if model.sizes else None)
    clean["quality"] = _choice(params, "quality", QUALITIES, "auto")
    clean["output_format"] = _choice(params, "output_format", OUTPUT_FORMATS, "png")
    if params.get("aspect_ratio") is not None:
        clean["aspect_ratio"] = _choice(params, "aspect_ratio", model.aspect_ratios)
    return {k: v for k, v in clean.items() if v is not None}


def cost(model: AIModel, multiplier, params: dict) -> int:
    """What the task costs when it produces what ``params`` asks for."""
    if model.family == Family.VIDEO:
        return pricing.video_cost(model, multiplier, seconds=params["duration"])
    quality = params.get("quality", "")
    return pricing.image_cost(
        model,
        multiplier,
        count=params.get("n", 1),
        size=params.get("size", ""),
        quality="" if quality == "auto" else quality,
    )


def request_digest(model_slug: str, params: dict, callback_url: str) -> str:
    canonical = json.dumps(
        {"model": model_slug, "params": params, "callback_url": callback_url}, sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- Submit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    task: Task
    created: bool


def task_prepare(
    *,
    account_id: int,
    api_key_id: int | None,
    model: AIModel,
    multiplier: Decimal,
    params: dict,
    out_task_id: str = "",
    callback_url: str = "",
    request_id: str = "",
    tags: tuple[str, ...] = (),
) -> Submitted:
    """Validate a submit: the task it would create (not saved; ``created`` True), or the task
    an earlier submit with the same ``out_task_id`` and request created (``created`` False).
    ``request_id``: the submit's (by default the current request's, from the log context)."""
    if model.family not in (Family.IMAGE, Family.VIDEO):
        raise _invalid(
            f"'{model.slug}' is a text model; tasks are for image and video models.", "model"
        )
    clean = validate_params(model, params)
    digest = request_digest(model.slug, clean, callback_url)
    if out_task_id:
        existing = _same_request(account_id, out_task_id, digest)
        if existing is not None:
            return Submitted(existing, False)
    if callback_url:
        from generation.callbacks.targets import CallbackURLError, check_callback_url

        try:
            check_callback_url(callback_url)
        except CallbackURLError as error:
            raise _invalid(str(error), "callback_url") from None
    task = Task(
        account_id=account_id,
        api_key_id=api_key_id,
        model=model,
        out_task_id=out_task_id,
        request_digest=digest,
        params=clean,
        rate_multiplier=multiplier,
        estimated_credits=cost(model, multiplier, clean),
        estimated_seconds=model.estimated_seconds,
        callback_url=callback_url,
        request_id=request_id or logs.request_id(),
        tags=",".join(tags),
        lease=secrets.token_hex(8),
    )
    return Submitted(task, True)


def task_create(task: Task, *, key_limits=None) -> Submitted:
    """Save a prepared task with its hold, and enqueue it once this commits. (The metering
    engine has counted it against its key's limits already: ``meter.task_reserve``.)"""
    try:
        with transaction.atomic():
            task.save()
            metering.task_hold(
                account_id=task.account_id,
                reference=task.public_id,
                amount=task.estimated_credits,
                api_key_id=task.api_key_id,
                key_limits=key_limits,
            )
            _enqueue(task)
            _transitioned(task, "submitted", None, TaskStatus.PENDING)
    except IntegrityError:
        # Another submit with this out_task_id won the race.
        existing = _same_request(task.account_id, task.out_task_id, task.request_digest)
        if existing is None:
            raise
        return Submitted(existing, False)
    return Submitted(task, True)


async def task_submit_async(*, key_limits=None, **request) -> Submitted:
    """Prepare, count against the key's limits, create: a submit from async code."""
    prepared = await run_db(task_prepare, **request)
    if not prepared.created:
        return prepared
    task = prepared.task
    if key_limits is not None:
        await meter.task_reserve(
            key_limits, reference=task.public_id, credits=task.estimated_credits
        )
    try:
        submitted = await run_db(task_create, task, key_limits=key_limits)
    except BaseException:
        if key_limits is not None:
            await meter.task_unreserve(task.public_id)
        raise
    if not submitted.created and key_limits is not None:
        await meter.task_unreserve(task.public_id)
    return submitted


def task_submit(*, key_limits=None, **request) -> Submitted:
    """``task_submit_async`` for sync code (the console's playground, scripts)."""
    return async_to_sync(task_submit_async)(key_limits=key_limits, **request)


def _same_request(account_id: int, out_task_id: str, digest: str) -> Task | None:
    existing = (
        Task.objects.select_related("model")
        .filter(account_id=account_id, out_task_id=out_task_id)
        .first()
    )
    if existing is not None and existing.request_digest != digest:
        raise TaskError(
            409,
            "duplicate_out_task_id",
            f"out_task_id '{out_task_id}' was already used for a different request.",
            "out_task_id",
        )
    return existing


def _enqueue(task: Task, countdown: float | None = None) -> None:
    from generation.jobs import task_advance

    if countdown is None:
        task_advance.delay_on_commit(task.pk, task.lease)
    else:
        lease = task.lease
        transaction.on_commit(
            lambda: task_advance.apply_async((task.pk, lease), countdown=countdown), robust=True
        )


def _transitioned(task: Task, transition: str, before, after, **fields) -> None:
    """Log a task's transition once the transaction that made it commits: the task, the
    request id of its submit, its account and model, the statuses, and ``fields`` (credits).

    Called inside the transition's transaction, with the request's or the worker's log context
    (``_task_context``); a transition caused by another request (a cancel) names that one too.
    """
    context = logs.context()
    current = context.get("request_id", "")
    account = task.account.public_id if Task.account.is_cached(task) else None
    line = {
        "request_id": task.request_id or current,
        "task_id": task.public_id,
        "account_id": account or context.get("account_id", ""),
        "model": task.model.slug,
        "transition": transition,
        "status_from": before,
        "status_to": after,
        **fields,
    }
    if current and current != line["request_id"]:
        line["by_request_id"] = current
    transaction.on_commit(lambda: transitions.info("task.transition", **line))


def _task_context(task: Task):
    """The log context of a worker's (or the reaper's) work on a task: its submit's request id,
    the task and its account."""
    fields = {"task_id": task.public_id, "account_id": task.account.public_id}
    if task.request_id:
        fields["request_id"] = task.request_id
    return logs.bound(**fields)


def notify_change(task: Task) -> None:
    """Tell live streams (any web process) that the task changed, once the change commits."""
    from generation.live import publish

    public_id = task.public_id
    transaction.on_commit(lambda: publish(public_id))


# --- The worker's step -----------------------------------------------------------------------


def task_advance(task_id: int, lease: str) -> float | None:
    """One step of a task's life: claim it, submit it upstream, poll it, finish it. Returns
    seconds until the next step, or None when there is nothing more to do (finished, or this
    message belongs to a chain the reaper replaced)."""
    task = Task.objects.select_related("model", "api_key", "account").filter(pk=task_id).first()
    if task is None or task.is_terminal or task.lease != lease:
        return None
    with _task_context(task):
        return _advance(task, lease)


def _advance(task: Task, lease: str) -> float | None:
    now = timezone.now()
    if task.status == TaskStatus.PENDING:
        claimed = Task.objects.filter(pk=task.pk, status=TaskStatus.PENDING, lease=lease).update(
            status=TaskStatus.RUNNING, started_at=now, heartbeat_at=now, version=F("version") + 1
        )
        if not claimed:
            return None
        metrics.TASK_QUEUE_WAIT.labels(task.model.slug).observe(
            (now - task.created_at).total_seconds()
        )
        task.refresh_from_db()
        with transaction.atomic():
            notify_change(task)
            _transitioned(task, "started", TaskStatus.PENDING, TaskStatus.RUNNING)
    else:
        Task.objects.filter(pk=task.pk).update(heartbeat_at=now)
    try:
        if task.model.family == Family.IMAGE:
            upstream, files = _submit(task, media.generate_images, _image(task))
            task.deployment_id = upstream.deployment_id
            Task.objects.filter(pk=task.pk).update(deployment_id=upstream.deployment_id)
            _complete(task, files)
            return None
        if not task.upstream_id:
            upstream, job = _submit(task, media.video_submit, _video(task))
            Task.objects.filter(pk=task.pk, upstream_id="").update(
                upstream_id=job.id, deployment_id=upstream.deployment_id
            )
            return _next_poll(task)
        route = _submitted_to(task).route
        job = media.video_status(route, task.upstream_id)
        if job.state == "completed":
            _complete(task, [media.video_download(route, task.upstream_id)])
            return None
        if job.state == "failed":
            code = job.error_code or "generation_failed"
            task_fail(task, code, job.error or "The provider could not make it.")
            return None
        _progress(task, job.progress)
        return _next_poll(task)
    except UpstreamError as error:
        if error.transient:  # try again; the reaper fails it past the model's time limit
            logger.warning("task %s: upstream %s, retrying", task.public_id, error.status)
            return _next_poll(task)
        task_fail(task, "upstream_error", error.message)
        return None
    except StorageUnavailable:  # our media storage refused the outputs: the same
        logger.warning("task %s: media storage unavailable, retrying", task.public_id)
        return _next_poll(task)


def _image(task: Task) -> media.ImageRequest:
    params = task.params
    return media.ImageRequest(
        prompt=params["prompt"],
        n=params.get("n", 1),
        size=params.get("size") or "1024x1024",
        quality="" if params.get("quality") == "auto" else params.get("quality", ""),
        output_format=params.get("output_format", "png"),
        seed=params.get("seed"),
    )


def _video(task: Task) -> media.VideoRequest:
    params = task.params
    return media.VideoRequest(
        prompt=params["prompt"],
        seconds=params["duration"],
        size=params.get("size", ""),
        aspect_ratio=params.get("aspect_ratio", ""),
        seed=params.get("seed"),
    )


def _next_poll(task: Task) -> float:
    """Poll about four times over what is left of the estimate, within 1 to 30 seconds."""
    remaining = task.estimated_seconds * (100 - task.progress) / 100
    return min(max(remaining / 4, POLL_MIN_SECONDS), POLL_MAX_SECONDS)


def _progress(task: Task, progress: int) -> None:
    progress = max(0, min(int(progress), 99))
    with transaction.atomic():
        changed = Task.objects.filter(
            pk=task.pk, status=TaskStatus.RUNNING, progress__lt=progress
        ).update(progress=progress, version=F("version") + 1)
        if changed:
            task.progress = progress
            notify_change(task)


def _submit(task: Task, send, request):
    """Send the task upstream, failing over across its model's deployments: the deployment that
    accepted it and its answer. Polls, downloads and cancels then stay with that deployment."""
    target = Target(task.model, task.rate_multiplier, upstreams_of(task.model))

    async def attempt(upstream: Upstream):
        return await sync_to_async(send, thread_sensitive=False)(
            upstream.route, upstream.upstream_model, request
        )

    return async_to_sync(first_answer)(target, attempt, started=time.monotonic())


def _submitted_to(task: Task) -> Upstream:
    """The deployment the task was submitted to (its model's first, for a task submitted before
    deployments were recorded, or whose deployment was since deleted)."""
    upstreams = upstreams_of(task.model, enabled_only=False)
    for upstream in upstreams:
        if upstream.deployment_id == task.deployment_id:
            return upstream
    if not upstreams:
        raise UpstreamError(502, "upstream_error", "The model has no deployment.")
    return upstreams[0]


def _usage(task: Task, *, images: int = 0, seconds: int = 0) -> UsageFacts:
    return UsageFacts(
        model_id=task.model_id,
        deployment_id=task.deployment_id,
        family=task.model.family,
        protocol="tasks",
        api_key_id=task.api_key_id,
        project_id=task.api_key.project_id if task.api_key else None,
        group_id=task.api_key.group_id if task.api_key else None,
        images=images,
        seconds=seconds,
        tags=tuple(task.tags.split(",")) if task.tags else (),
    )


def _complete(task: Task, files: list) -> None:
    from generation.files import artifacts_prepare

    kind = "video" if task.model.family == Family.VIDEO else "image"
    artifacts = artifacts_prepare(account_id=task.account_id, kind=kind, files=files, task=task)
    for artifact in artifacts:
        artifact.save()
    if task.model.family == Family.VIDEO:
        charge = cost(task.model, task.rate_multiplier, task.params)
        usage = _usage(task, seconds=task.params["duration"])
    else:
        charge = cost(task.model, task.rate_multiplier, {**task.params, "n": len(files)})
        usage = _usage(task, images=len(files))
    now = timezone.now()
    with transaction.atomic():
        won = Task.objects.filter(pk=task.pk, status=TaskStatus.RUNNING).update(
            status=TaskStatus.COMPLETED,
            progress=100,
            completed_at=now,
            version=F("version") + 1,
        )
        if not won:  # cancelled (or reaped) meanwhile: its files are not wanted
            transaction.on_commit(lambda: _discard(artifacts))
            return
        settlement = metering.task_settle(reference=task.public_id, charge=charge, usage=usage)
        Task.objects.filter(pk=task.pk).update(credits_used=settlement.charged)
        _terminal_effects(task, TaskStatus.COMPLETED)
        _transitioned(
            task, "completed", TaskStatus.RUNNING, TaskStatus.COMPLETED,
            credits_micro=settlement.charged,
        )  # fmt: skip


def _discard(artifacts) -> None:
    from generation.files import artifacts_discard

    artifacts_discard(artifacts)


def task_fail(task: Task, code: str, message: str) -> bool:
    """Fail a running (or pending) task: it costs nothing. False if it was already terminal."""
    with transaction.atomic():
        won = Task.objects.filter(
            pk=task.pk, status__in=(TaskStatus.PENDING, TaskStatus.RUNNING)
        ).update(
            status=TaskStatus.FAILED,
            error={"code": code, "message": message[:500]},
            credits_used=0,
            completed_at=timezone.now(),
            version=F("version") + 1,
        )
        if not won:
            return False
        metering.task_release(reference=task.public_id)
        _terminal_effects(task, TaskStatus.FAILED)
        _transitioned(
            task, "failed", task.status, TaskStatus.FAILED, credits_micro=0, error=code
        )  # fmt: skip
    return True


def _terminal_effects(task: Task, status: str) -> None:
    """Inside the terminal transition's transaction: the callback, the live notice and the
    count of finished tasks (once committed)."""
    notify_change(task)
    counted = metrics.TASKS_FINISHED.labels(task.model.slug, status)
    transaction.on_commit(counted.inc)
    if task.callback_url:
        from generation.callbacks.services import callback_schedule
        from generation.task_objects import task_object

        fresh = Task.objects.select_related("model").get(pk=task.pk)
        callback_schedule(fresh, task_object(fresh, settings.BYTESPIKE_PUBLIC_URL))


# --- Cancel ----------------------------------------------------------------------------------


def task_cancel(task: Task) -> Task:
    """Cancel a task (idempotent: a terminal task is returned unchanged).

    Pending: free. Running: billed by the model's refund policy on what was done (full: free;
    prorated: the share not done is refunded; none: billed in full), then cancelled upstream
    where the provider can. The upstream job is cancelled only after the cancellation has won
    its compare-and-set: cancelling it first would let the worker see it gone and fail the task,
    free, whatever the policy says.
    """
    if task.is_terminal:
        return task
    now = timezone.now()
    with transaction.atomic():
        current = Task.objects.filter(pk=task.pk).values_list("status", "progress", "upstream_id")
        status, progress, upstream_id = current.first()
        if status not in (TaskStatus.PENDING, TaskStatus.RUNNING):
            return _reload(task)
        policy = task.model.cancel_refund_policy
        if status == TaskStatus.PENDING or policy == RefundPolicy.FULL:
            charge = 0
        elif policy == RefundPolicy.NONE:
            charge = task.estimated_credits
        else:
            charge = task.estimated_credits * progress // 100
        won = Task.objects.filter(pk=task.pk, status=status).update(
            status=TaskStatus.CANCELLED, completed_at=now, version=F("version") + 1
        )
        if not won:
            return _reload(task)
        if charge:
            done = (progress / 100) if policy == RefundPolicy.PRORATED else 1
            usage = (
                _usage(task, seconds=round(task.params.get("duration", 0) * done))
                if task.model.family == Family.VIDEO
                else _usage(task, images=task.params.get("n", 1))
            )
            charged = metering.task_settle(reference=task.public_id, charge=charge, usage=usage)
            charge = charged.charged
        else:
            metering.task_release(reference=task.public_id)
        Task.objects.filter(pk=task.pk).update(credits_used=charge)
        _terminal_effects(task, TaskStatus.CANCELLED)
        _transitioned(task, "cancelled", status, TaskStatus.CANCELLED, credits_micro=charge)
    if status == TaskStatus.RUNNING and upstream_id:
        _cancel_upstream(task, upstream_id)
    return _reload(task)


def _cancel_upstream(task: Task, upstream_id: str) -> None:
    """Stop the upstream job of a cancelled task, so it spends no more (best effort)."""
    try:
        media.video_cancel(_submitted_to(task).route, upstream_id)
    except UpstreamError:
        logger.info("task %s: upstream cancel failed; it is cancelled here", task.public_id)


def _reload(task: Task) -> Task:
    return Task.objects.select_related("model", "api_key").get(pk=task.pk)


# --- The reaper ------------------------------------------------------------------------------


def tasks_reap() -> dict:
    """Revive tasks no worker is looking after, and fail those past their model's limit.

    A lost message (broker restart, a killed worker) leaves a task's heartbeat stale: it gets a
    new lease and a new message. A task running longer than its model allows is asked about
    once more, then failed (its hold released).
    """
    now = timezone.now()
    revived = failed = 0
    stale = Task.objects.select_related("model", "api_key", "account").filter(
        status__in=(TaskStatus.PENDING, TaskStatus.RUNNING), heartbeat_at__lt=now - stale_after()
    )
    for task in stale:
        with _task_context(task):
            outcome = _reap(task, now)
        revived += outcome == "revived"
        failed += outcome == "failed"
    return {"revived": revived, "failed": failed}


def _reap(task: Task, now) -> str:
    started = task.started_at or task.created_at
    limit = timedelta(seconds=task.model.max_run_seconds) + OVERDUE_GRACE
    if task.status == TaskStatus.RUNNING and now - started > limit:
        task_advance(task.pk, task.lease)  # ask the upstream once more
        if task_fail(task, "timeout", "The generation did not finish in time."):
            return "failed"
        return ""
    lease = secrets.token_hex(8)
    with transaction.atomic():
        if Task.objects.filter(pk=task.pk, lease=task.lease).update(lease=lease, heartbeat_at=now):
            task.lease = lease
            _enqueue(task)
            _transitioned(task, "revived", task.status, task.status)
            return "revived"
    return ""
