"""The async task routes (SPEC §7): submit, query, cancel and the SSE stream, in the OpenAI
error envelope. Tasks are created and changed by generation/services.py; these views parse,
look up within the caller's account (another account's task is a 404), and answer."""

import asyncio
import json
import logging

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import JsonResponse, StreamingHttpResponse

from billing import tags
from core.db import run_db
from core.errors import ApiError
from generation import metering, services
from generation.dataplane.base import dataplane_view, json_body
from generation.dataplane.errors import Protocol
from generation.live import Listener
from generation.models import Task
from generation.routing import resolve_model_for
from generation.selectors import task_for_account, task_poll
from generation.task_objects import task_object
from keys.auth import KeyPrincipal

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
ENVELOPE_KEYS = {"model", "params", "out_task_id", "callback_url"}


def _text(body: dict, name: str, *, limit: int) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise ApiError(
            400, "invalid_param", f"'{name}' must be text of at most {limit} characters.", name
        )
    return value.strip()


def _base_url(request) -> str:
    return request.build_absolute_uri("/")


def _present(task: Task, request) -> dict:
    return task_object(task, _base_url(request))


@dataplane_view(Protocol.OPENAI, methods=("POST",))
async def submit(request, principal: KeyPrincipal):
    body = json_body(request, MAX_BODY_BYTES)
    slug = body.get("model")
    if not isinstance(slug, str) or not slug:
        raise ApiError(400, "invalid_param", "Missing required parameter: 'model'.", "model")
    params = body["params"] if "params" in body else {
        key: value for key, value in body.items() if key not in ENVELOPE_KEYS
    }  # fmt: skip
    out_task_id = _text(body, "out_task_id", limit=128)
    callback_url = _text(body, "callback_url", limit=2000)
    call_tags = tags.call_tags(request.headers.get(tags.HEADER))
    target = await resolve_model_for(principal, slug)
    submitted = await services.task_submit_async(
        account_id=principal.account_id,
        api_key_id=principal.key_id,
        model=target.model,
        multiplier=target.multiplier,
        params=params,
        out_task_id=out_task_id,
        callback_url=callback_url,
        request_id=request.bytespike_request_id,
        tags=call_tags,
        key_limits=principal,
    )
    return JsonResponse(await run_db(_present, submitted.task, request))


async def _find(principal: KeyPrincipal, task_id: str = "", out_task_id: str = "") -> Task:
    if bool(task_id) == bool(out_task_id):
        raise ApiError(
            400, "invalid_param", "Give exactly one of 'task_id' and 'out_task_id'.", "task_id"
        )
    task = await run_db(
        task_for_account, account_id=principal.account_id, task_id=task_id, out_task_id=out_task_id
    )
    if task is None:
        raise ApiError(404, "task_not_found", "No such task.", "task_id")
    return task


def _identifiers(request) -> tuple[str, str]:
    if request.method == "GET":
        source = request.GET
        return source.get("task_id", "").strip(), source.get("out_task_id", "").strip()
    body = json_body(request, MAX_BODY_BYTES, allow_empty=True)
    return _text(body, "task_id", limit=64), _text(body, "out_task_id", limit=128)


def _look_up(principal: KeyPrincipal, task_id: str, out_task_id: str, base_url: str):
    """The task object and the wallet headers, from one read in one trip to a thread."""
    poll = task_poll(
        account_id=principal.account_id,
        key_id=principal.key_id,
        task_id=task_id,
        out_task_id=out_task_id,
    )
    if poll is None:
        return None, {}
    headers = metering.books_headers(principal, poll.wallet, poll.key_spent)
    return task_object(poll.task, base_url), headers


@dataplane_view(Protocol.OPENAI, methods=("GET", "POST"))
async def query(request, principal: KeyPrincipal):
    task_id, out_task_id = _identifiers(request)
    if bool(task_id) == bool(out_task_id):
        raise ApiError(
            400, "invalid_param", "Give exactly one of 'task_id' and 'out_task_id'.", "task_id"
        )
    data, headers = await run_db(_look_up, principal, task_id, out_task_id, _base_url(request))
    if data is None:
        raise ApiError(404, "task_not_found", "No such task.", "task_id")
    response = JsonResponse(data)
    for name, value in headers.items():
        response[name] = value
    return response


@dataplane_view(Protocol.OPENAI, methods=("POST",))
async def cancel(request, principal: KeyPrincipal, task_id: str = ""):
    task = await _find(principal, task_id) if task_id else await _find(
        principal, *_identifiers(request)
    )  # fmt: skip
    task = await run_db(services.task_cancel, task)
    return JsonResponse(await run_db(_present, task, request))


# --- The SSE stream --------------------------------------------------------------------------


def _read(task_pk: int, base_url: str) -> tuple[int, str, dict]:
    """The task's version, status and object; the connection goes back at once."""
    try:
        task = Task.objects.select_related("model").get(pk=task_pk)
        return task.version, task.status, task_object(task, base_url)
    finally:
        connections.close_all()


def _frame(event: str, version: int, data: dict) -> bytes:
    payload = json.dumps(data, separators=(",", ":"))
    return f"id: {version}\nevent: {event}\ndata: {payload}\n\n".encode()


async def _events(task: Task, base_url: str, last_event_id: int):
    """A status event at once (unless Last-Event-ID says it was seen), another on each change,
    keepalive comments, and an event named after the terminal status before closing."""
    loop = asyncio.get_running_loop()
    keepalive = settings.BYTESPIKE_SSE_KEEPALIVE_SECONDS
    seen = last_event_id
    fresh = last_event_id == 0
    async with Listener(task.public_id) as listener:
        next_keepalive = loop.time() + keepalive
        while True:
            try:
                version, status, data = await run_db(_read, task.pk, base_url)
            except DatabaseError:
                # The database is restarting: the stream stays open (a comment keeps proxies
                # from closing it) and reads again, rather than cut without a terminal event.
                logger.warning("database unavailable for the stream of %s", task.public_id)
                yield b": waiting for the database\n\n"
                await asyncio.sleep(1)
                continue
            changed = version > seen or fresh
            if status in ("completed", "failed", "cancelled"):
                if changed and fresh:
                    yield _frame("status", version, data)
                yield _frame(status, version, data)
                return
            if changed:
                yield _frame("status", version, data)
                seen, fresh = version, False
            wait = next_keepalive - loop.time()
            if wait <= 0:
                yield b": keepalive\n\n"
                next_keepalive = loop.time() + keepalive
                continue
            await listener.wait(wait)


@dataplane_view(Protocol.OPENAI, methods=("GET",))
async def stream(request, principal: KeyPrincipal, task_id: str):
    task = await _find(principal, task_id)
    try:
        last_event_id = int(request.headers.get("Last-Event-ID") or 0)
    except ValueError:
        last_event_id = 0
    response = StreamingHttpResponse(
        _events(task, _base_url(request), last_event_id), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
