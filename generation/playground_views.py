"""The console's playground: try a model with one of your keys, through the pipelines the API
uses (the text gateway, sync images, async tasks), billed to that key.

The browser never holds a key's secret. The user picks one of the keys they may use
(``keys.auth.principal_for_console``: developers their own keys in their projects and every key
of a project they are admin of, admins and owners any;
active, not expired) and these views call the data plane on its behalf: ``serve_text`` with the
``playground`` caller (its usage rows say so), ``make_images``, and ``services.task_submit``.
A key the user may not use (a teammate's, for a developer; a revoked or expired one; another
account's) is a 404, like any object outside the user's reach. A call with a key is a call
from the console user's address: a key whose IP lists refuse it is refused here too, with the
API's message. Viewers see the page with every control disabled; every POST needs
``USE_PLAYGROUND`` (403 otherwise).

Form errors (bad params, refusals such as 402 insufficient_balance) re-render the form with the
message and answer 422, which the console's htmx config swaps in.
"""

import io
import math
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import reswap, retarget, trigger_client_event
from PIL import Image, UnidentifiedImageError

from accounts.decorators import account_view, account_view_async
from accounts.permissions import USE_PLAYGROUND, can_manage_key
from billing import pricing
from billing.errors import BillingError
from billing.models import UsageRecord
from catalogue.models import AIModel, Family, RoutingGroup
from catalogue.selectors import models_in_group
from core.errors import ApiError
from core.http import client_ip, public_base_url
from generation import services
from generation.dataplane.base import json_body
from generation.dataplane.errors import Protocol, error_response
from generation.dataplane.images import image_options, make_images
from generation.dataplane.text import PLAYGROUND, serve_text
from generation.files import retention_text
from generation.form_words import form_message
from generation.providers import media
from generation.routing import model_not_allowed, resolve_model_for
from generation.task_pages import render_card
from keys import snippets
from keys.auth import KeyAuthError, KeyPrincipal, key_used, principal_for_console
from keys.models import ApiKey, KeyStatus
from keys.selectors import api_keys_visible_to

PAGE = "generation/playground.html"
MAX_CHAT_BYTES = 4 * 1024 * 1024
MAX_TURNS = 200
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
QUALITIES = ("auto", "low", "medium", "high")
VIDEO_FIELDS = ("prompt", "duration", "aspect_ratio", "size", "seed", "negative_prompt")
IMAGE_TASK_FIELDS = ("prompt", "n", "size", "quality", "aspect_ratio", "seed")
FORM_FIELDS = {*VIDEO_FIELDS, *IMAGE_TASK_FIELDS, "image", "mask"}
USAGE_TRIES = 8  # the usage fragment asks again this many times (a stopped stream settles late)


# --- Who may do what -------------------------------------------------------------------------


def playground_keys(membership) -> list[ApiKey]:
    """The keys the page offers: those the user may use (for a viewer, who may use none, the
    usable keys of their projects, shown in disabled controls)."""
    keys = [
        key
        for key in api_keys_visible_to(membership)
        .filter(status=KeyStatus.ACTIVE)
        .order_by("name", "created_at")
        if not key.is_expired
    ]
    if membership.can(USE_PLAYGROUND):
        keys = [key for key in keys if can_manage_key(membership, key)]
    return keys


def _principal(request, key_id: str, *, calling: bool = False) -> KeyPrincipal | None:
    """The chosen key (None if the user may not use it), checked against the request's address:
    a key whose IP lists refuse it is an ``ApiError`` (403) with the API's message. ``calling``:
    a call is made with it (not an estimate), which is a use of the key ("last used")."""
    try:
        principal = principal_for_console(
            request.membership, key_id or "", address=client_ip(request)
        )
    except KeyAuthError as error:
        raise ApiError(error.status, error.code, error.message, "key") from None
    if calling and principal is not None:
        key_used(principal.key_id)
    return principal


def _principal_or_404(request, key_id: str, *, calling: bool = False) -> KeyPrincipal:
    principal = _principal(request, key_id, calling=calling)
    if principal is None:
        raise Http404("No key you can use has this id.")
    return principal


def _model_in_group(group_id: int, slug: str) -> AIModel | None:
    return models_in_group(group_id).filter(slug=slug).first()


def key_models(key: ApiKey) -> list[AIModel]:
    """The models the key may call: its group's, narrowed to its allowlist if it has one."""
    return [model for model in models_in_group(key.group_id) if key.may_call(model.slug)]


def _multiplier(group_id: int) -> Decimal:
    return RoutingGroup.objects.values_list("rate_multiplier", flat=True).get(pk=group_id)


# --- The page --------------------------------------------------------------------------------


def _choose(keys: list[ApiKey], key_id: str, slug: str):
    """The chosen key (else the first), the models it may call, and the chosen model (else the
    first text model, else the first)."""
    key = next((k for k in keys if k.public_id == key_id), keys[0] if keys else None)
    if key is None:
        return None, [], None
    models = key_models(key)
    model = next((m for m in models if m.slug == slug), None)
    if model is None:
        model = next((m for m in models if m.family == Family.TEXT), models[0] if models else None)
    return key, models, model


def _options(model: AIModel) -> dict:
    """What the model's forms offer."""
    if model is None:
        return {}
    limit = min(4, model.max_images or 4)
    return {
        "counts": list(range(1, limit + 1)),
        "sizes": list(model.sizes or []),
        "durations": [int(d) for d in model.durations or []],
        "aspect_ratios": list(model.aspect_ratios or []),
        "qualities": QUALITIES,
        "can_edit": "image-edit" in (model.capabilities or []),
    }


def _prices(model: AIModel, multiplier: Decimal) -> dict:
    def price(micros: int) -> int:
        return pricing.apply_multiplier(micros, multiplier)

    return {
        "input": price(model.input_price),
        "output": price(model.output_price),
        "image": price(pricing.image_unit_price(model, size=(model.sizes or [""])[0])),
        "video_second": price(model.video_price_per_second),
    }


def _estimate(model: AIModel, multiplier: Decimal, data, fields) -> dict:
    """The estimate fragment's context: credits for these params, or why they are invalid."""
    params = _params_from(data, fields)
    params["prompt"] = params.get("prompt") or "estimate"  # the prompt does not change the price
    try:
        clean = services.validate_params(model, params)
    except services.TaskError as error:
        return {"estimate_error": error.message}
    return {"estimate": services.cost(model, multiplier, clean)}


def _params_from(data, fields) -> dict:
    params = {}
    for name in fields:
        value = data.get(name)
        if value is None:
            continue
        value = value if name in ("prompt", "negative_prompt") else value.strip()
        if value.strip():
            params[name] = value
    return params


def _panel_context(request, key: ApiKey | None, model: AIModel | None, **extra) -> dict:
    readonly = not request.membership.can(USE_PLAYGROUND)
    context = {"key": key, "model": model, "readonly": readonly, **_options(model)}
    if key is not None and model is not None:
        multiplier = key.group.rate_multiplier
        context["multiplier"] = multiplier
        context["prices"] = _prices(model, multiplier)
        values = extra.get("values") or {}
        if model.family == Family.VIDEO:
            context.update(_estimate(model, multiplier, values, VIDEO_FIELDS))
        elif model.family == Family.IMAGE:
            context.update(_estimate(model, multiplier, values, IMAGE_TASK_FIELDS))
            context["now_estimate"] = _estimate(
                model, multiplier, values, ("prompt", "n", "size", "quality")
            )
    context.update(extra)
    context.setdefault("values", {})
    return context


@require_GET
@account_view()
def playground(request):
    """The page; with htmx, the model list of another key (and its panel) or another model's
    panel."""
    keys = playground_keys(request.membership)
    key, models, model = _choose(keys, request.GET.get("key", ""), request.GET.get("model", ""))
    context = {
        "keys": keys,
        "models": models,
        **_panel_context(request, key, model),
    }
    target = request.htmx.target if request.htmx else None
    if target == "playground-models":
        return render(request, f"{PAGE}#key-changed", context)
    if target == "playground-panel":
        return render(request, f"{PAGE}#panel", context)
    return render(request, PAGE, context)


def _estimate_for_key(principal: KeyPrincipal, query) -> dict:
    model = _model_in_group(principal.group_id, query.get("model", ""))
    fields = VIDEO_FIELDS if model and model.family == Family.VIDEO else IMAGE_TASK_FIELDS
    if query.get("mode") == "now":
        fields = ("prompt", "n", "size", "quality")
    if model is None or model.family == Family.TEXT:
        return {"estimate_error": "This key's group has no such image or video model."}
    if not principal.may_call(model.slug):
        return {"estimate_error": model_not_allowed(model.slug).message}
    return _estimate(model, _multiplier(principal.group_id), query, fields)


@require_GET
@account_view(USE_PLAYGROUND)
def estimate(request):
    """Estimated credits for a task (or a sync image call) with these params, for the key's
    group; an invalid param shows its message instead (422)."""
    try:
        principal = _principal_or_404(request, request.GET.get("key", ""))
    except ApiError as error:  # the key's IP lists refuse this address
        context = {"estimate_error": error.message}
    else:
        context = _estimate_for_key(principal, request.GET)
    context["estimate_id"] = "now-estimate" if request.GET.get("mode") == "now" else "task-estimate"
    context["mode"] = request.GET.get("mode", "")
    status = 422 if "estimate_error" in context else 200
    return render(request, f"{PAGE}#estimate", context, status=status)


# --- Form answers ----------------------------------------------------------------------------


def _form_error(
    request, form: str, *, key_id: str, slug: str, message: str, param=None, code: str = ""
):
    """Re-render ``form`` (``task-form`` or ``image-form``) with the message, in place (422),
    said in the form's words (an API's "Missing required parameter: 'prompt'." is "Enter a
    prompt." here); a 402 from the wallet (``code``) comes with a link to the top-up page."""
    message = form_message(message, param)
    keys = playground_keys(request.membership)
    key, models, model = _choose(keys, key_id, slug)
    if model is None or model.slug != slug:  # a stale page: the form of a model it may use
        families = (Family.IMAGE,) if form == "image-form" else (Family.VIDEO, Family.IMAGE)
        model = next((m for m in models if m.family in families), model)
    field = (param or "").removeprefix("params.")
    if field not in FORM_FIELDS:
        field = ""  # not a field of the form (the model, say): the message goes on top
    values = request.POST.dict()
    context = _panel_context(
        request,
        key,
        model,
        values=values,
        form_error=message,
        form_error_code=code,
        error_field=field,
    )
    response = render(request, f"{PAGE}#{form}", context, status=422)
    response = retarget(response, f"#{form}")
    response = reswap(response, "outerHTML")
    return trigger_client_event(response, "announce", {"message": message})


# --- Tasks (video, async images) -------------------------------------------------------------


@require_POST
@account_view(USE_PLAYGROUND)
def task_submit(request):
    """Submit a task through the pipeline /v1/tasks/submit uses, billed to the chosen key; the
    answer is the task card (which polls itself until the task is done)."""
    data = request.POST
    key_id, slug = data.get("key", ""), data.get("model", "")
    try:
        principal = _principal_or_404(request, key_id, calling=True)
    except ApiError as error:
        return _form_error(
            request, "task-form", key_id=key_id, slug=slug, message=error.message,
            param=error.param,
        )  # fmt: skip
    model = _model_in_group(principal.group_id, slug)
    if model is None:
        return _form_error(
            request, "task-form", key_id=key_id, slug=slug, param="model",
            message="This key's routing group does not include that model.",
        )  # fmt: skip
    if not principal.may_call(slug):
        return _form_error(
            request, "task-form", key_id=key_id, slug=slug, param="model",
            message=model_not_allowed(slug).message,
        )  # fmt: skip
    fields = VIDEO_FIELDS if model.family == Family.VIDEO else IMAGE_TASK_FIELDS
    try:
        submitted = services.task_submit(
            account_id=principal.account_id,
            api_key_id=principal.key_id,
            model=model,
            multiplier=_multiplier(principal.group_id),
            params=_params_from(data, fields),
            key_limits=principal,
        )
    except (services.TaskError, BillingError) as error:
        return _form_error(
            request, "task-form", key_id=key_id, slug=slug, message=error.message,
            param=error.param, code=error.code,
        )  # fmt: skip
    task = submitted.task
    if not request.htmx:
        return redirect("generation:task-detail", task_id=task.public_id)
    response = render_card(request, task, status=200)
    return trigger_client_event(
        response, "announce", {"message": f"Task submitted: {model.display_name}, pending."}
    )


# --- Sync images -----------------------------------------------------------------------------


def _upload_bytes(upload, field: str) -> bytes:
    data = upload.read()
    try:
        Image.open(io.BytesIO(data)).verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ApiError(
            400, "invalid_param", f"The {field} must be a PNG, JPEG or WebP image.", field
        ) from None
    return data


def _render_images(request, *, model_slug: str, options: dict, items: list[dict]):
    record = (
        UsageRecord.objects.filter(account=request.account, request_id=request.bytespike_request_id)
        .select_related("model")
        .first()
    )
    width, _, height = options["size"].partition("x")
    context = {
        "items": items,
        "prompt": options["prompt"],
        "model": record.model if record else AIModel.objects.filter(slug=model_slug).first(),
        "record": record,
        "width": width if width.isdigit() else "",
        "height": height if height.isdigit() else "",
        "edited": options.get("edited", False),
        "request_id": request.bytespike_request_id,
        "media_retention": retention_text(),
    }
    response = render(request, f"{PAGE}#image-results", context)
    count = len(items)
    notice = f"{count} image{'s' if count != 1 else ''} ready."
    return trigger_client_event(response, "announce", {"message": notice})


@require_POST
@account_view_async(USE_PLAYGROUND)
async def images(request):
    """Generate (or edit) images now, through the pipeline /v1/images/* use."""
    data, files = request.POST, request.FILES
    key_id, slug = data.get("key", ""), data.get("model", "")
    edit = data.get("action") == "edit"
    try:
        principal = await sync_to_async(_principal_or_404)(request, key_id, calling=True)
        if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "request_too_large", "The upload is over 50 MiB.", "image")
        target = await resolve_model_for(principal, slug)
        fields = {name: data.get(name) for name in ("prompt", "n", "size", "quality")}
        options = image_options({k: v for k, v in fields.items() if v}, target)
        call, uploads, mask = media.generate_images, [], None
        if edit:
            if "image" not in files:
                raise ApiError(400, "invalid_param", "Choose an image to edit.", "image")
            call = media.edit_images
            uploads = [_upload_bytes(files["image"], "image")]
            mask = _upload_bytes(files["mask"], "mask") if "mask" in files else None
        items, _ = await make_images(
            request, principal, target, options, call=call, images=uploads, mask=mask
        )
    except ApiError as error:
        return await sync_to_async(_form_error)(
            request, "image-form", key_id=key_id, slug=slug, message=error.message,
            param=error.param, code=error.code,
        )  # fmt: skip
    return await sync_to_async(_render_images)(
        request, model_slug=slug, options={**options, "edited": edit}, items=items
    )


# --- Text ------------------------------------------------------------------------------------


def _invalid(message: str, param: str) -> ApiError:
    return ApiError(400, "invalid_param", message, param)


def chat_body(payload: dict, model: str) -> dict:
    """The OpenAI Chat request the page's conversation stands for (always streamed, with the
    usage chunk)."""
    system = payload.get("system") or ""
    if not isinstance(system, str):
        raise _invalid("The system prompt must be text.", "system")
    turns = payload.get("messages")
    if not isinstance(turns, list) or not turns:
        raise _invalid("Write a message first.", "messages")
    if len(turns) > MAX_TURNS:
        raise _invalid(f"A conversation holds at most {MAX_TURNS} messages.", "messages")
    messages = [{"role": "system", "content": system}] if system.strip() else []
    for turn in turns:
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise _invalid("Each message needs a role: user or assistant.", "messages")
        content = turn.get("content")
        if not isinstance(content, str):
            raise _invalid("Each message's content must be text.", "messages")
        if content.strip():
            messages.append({"role": turn["role"], "content": content})
    if not messages or messages[-1]["role"] != "user":
        raise _invalid("Write a message first.", "messages")
    body = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    temperature = payload.get("temperature")
    if temperature not in (None, ""):
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise _invalid("Temperature must be a number from 0 to 2.", "temperature") from None
        if not (math.isfinite(temperature) and 0 <= temperature <= 2):
            raise _invalid("Temperature must be a number from 0 to 2.", "temperature")
        body["temperature"] = temperature
    max_tokens = payload.get("max_tokens")
    if max_tokens not in (None, ""):
        try:
            max_tokens = int(max_tokens)
        except (TypeError, ValueError):
            raise _invalid("Max tokens must be a whole number.", "max_tokens") from None
        if max_tokens < 1:
            raise _invalid("Max tokens must be at least 1.", "max_tokens")
        body["max_tokens"] = max_tokens
    return body


def _chat_payload(request) -> dict:
    if request.content_type != "application/json":
        raise _invalid("The playground's chat sends JSON (it needs JavaScript).", None)
    # The data plane's reader: its size limit, and no JSON that Python takes but nothing
    # downstream can (NaN, lone surrogates, nesting deeper than the parser goes).
    return json_body(request, MAX_CHAT_BYTES)


@require_POST
@account_view_async(USE_PLAYGROUND)
async def chat(request):
    """One turn of the chat: the text gateway's answer, streamed as OpenAI Chat chunks
    (``data: {...}`` ... ``data: [DONE]``) with the usage chunk; ``X-Request-ID`` names the
    usage row (see ``usage``). A refusal is a JSON error in the OpenAI envelope."""
    try:
        payload = _chat_payload(request)
        key_id, model = payload.get("key"), payload.get("model")
        if not isinstance(key_id, str) or not isinstance(model, str) or not model:
            raise _invalid("Choose a key and a model.", "model")
        principal = await sync_to_async(_principal)(request, key_id, calling=True)
        if principal is None:
            raise ApiError(404, "not_found", "No key you can use has this id.", "key")
        response = await serve_text(request, principal, PLAYGROUND, body=chat_body(payload, model))
    except ApiError as error:
        response = error_response(Protocol.OPENAI, error)
    response["X-Request-ID"] = request.bytespike_request_id
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@account_view(USE_PLAYGROUND)
def chat_code(request):
    """ "View code": the chat request the page just sent (the same JSON), as the gateway's
    callers would send it to /v1/chat/completions, in curl and Python, built by ``chat_body``
    as the chat itself is. The key's secret is never shown: the code reads $BYTESPIKE_API_KEY."""
    try:
        payload = _chat_payload(request)
        key_id, model = payload.get("key"), payload.get("model")
        if not isinstance(key_id, str) or not isinstance(model, str) or not model:
            raise _invalid("Choose a key and a model.", "model")
        principal = _principal(request, key_id)
        if principal is None:
            raise ApiError(404, "not_found", "No key you can use has this id.", "key")
        body = chat_body(payload, model)
    except ApiError as error:
        return error_response(Protocol.OPENAI, error)
    key = api_keys_visible_to(request.membership).get(pk=principal.key_id)
    context = {
        "key": key,
        "snippets": snippets.chat_request(base_url=public_base_url(request), body=body),
    }
    return render(request, f"{PAGE}#chat-code", context)


@require_GET
@account_view()
def usage(request, request_id: str):
    """Tokens and credits of one playground call (a fragment the chat shows after an answer).
    A stopped stream is settled a moment after the browser lets go, so the fragment asks again
    a few times before it says nothing was billed."""
    record = UsageRecord.objects.filter(account=request.account, request_id=request_id).first()
    try:
        tries = int(request.GET.get("try", "0"))
    except ValueError:
        tries = 0
    context = {
        "record": record,
        "request_id": request_id,
        "next_try": tries + 1 if tries + 1 < USAGE_TRIES else None,
    }
    return render(request, f"{PAGE}#usage", context)
