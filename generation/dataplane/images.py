"""POST /v1/images/generations and /v1/images/edits (SPEC §6): synchronous images, at most 30
seconds, billed per image, free when they fail. Answers in OpenAI's Images shape, with signed
URLs (each with its ``expires_at``: BYTESPIKE_MEDIA_RETENTION_DAYS) or base64 data."""

import asyncio
import base64
import io
import time

from asgiref.sync import sync_to_async
from django.http import JsonResponse
from PIL import Image, UnidentifiedImageError

from billing import pricing, tags
from billing.metering import meter
from billing.usage import UsageFacts
from catalogue.models import Family
from core.db import run_db
from core.errors import ApiError
from generation.dataplane.base import dataplane_view, json_body
from generation.dataplane.errors import Protocol
from generation.failover import UPSTREAM_HEADER, first_answer
from generation.files import StorageUnavailable, artifact_url, artifacts_prepare, iso_time
from generation.providers import media
from generation.routing import Target, Upstream, resolve_model_for
from keys.auth import KeyPrincipal

TIME_LIMIT_SECONDS = 30
MAX_JSON_BYTES = 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_INPUT_IMAGES = 16
PROMPT_MAX = 32_000
QUALITIES = ("auto", "low", "medium", "high", "standard", "hd")
FORMATS = ("png", "jpeg", "webp")


def _invalid(message: str, param: str) -> ApiError:
    return ApiError(400, "invalid_param", message, param)


def image_options(fields, target: Target) -> dict:
    """Validate the fields both routes share against the model."""
    model = target.model
    if model.family != Family.IMAGE:
        raise _invalid(f"'{model.slug}' is not an image model.", "model")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _invalid("Missing required parameter: 'prompt'.", "prompt")
    if len(prompt) > PROMPT_MAX:
        raise _invalid(f"'prompt' is over {PROMPT_MAX} characters.", "prompt")
    n = fields.get("n", 1)
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise _invalid("'n' must be an integer.", "n") from None
    limit = min(4, model.max_images or 4)
    if not 1 <= n <= limit:
        raise _invalid(f"'n' must be between 1 and {limit}.", "n")
    size = fields.get("size") or "auto"
    if size != "auto" and model.sizes and size not in model.sizes:
        raise _invalid(f"'size' must be one of: auto, {', '.join(model.sizes)}.", "size")
    quality = fields.get("quality") or "auto"
    if quality not in QUALITIES:
        raise _invalid(f"'quality' must be one of: {', '.join(QUALITIES)}.", "quality")
    response_format = fields.get("response_format") or "url"
    if response_format not in ("url", "b64_json"):
        raise _invalid("'response_format' must be 'url' or 'b64_json'.", "response_format")
    output_format = fields.get("output_format") or "png"
    if output_format not in FORMATS:
        raise _invalid(f"'output_format' must be one of: {', '.join(FORMATS)}.", "output_format")
    return {
        "prompt": prompt,
        "n": n,
        "size": model.sizes[0] if size == "auto" and model.sizes else size,
        "quality": "" if quality == "auto" else quality,
        "response_format": response_format,
        "output_format": output_format,
        "user": user if isinstance(user := fields.get("user"), str) else "",
    }


async def _serve(request, principal, target: Target, options: dict, call, images=(), mask=None):
    data, headers = await make_images(request, principal, target, options, call, images, mask)
    response = JsonResponse({"created": int(time.time()), "data": data})
    for name, value in headers.items():
        response[name] = value
    return response


async def make_images(
    request, principal, target: Target, options: dict, call=media.generate_images, images=(),
    mask=None,
) -> tuple[list[dict], dict]:  # fmt: skip
    """Hold, generate (or edit), settle: the images' data items and the wallet headers. The
    playground calls this too, on behalf of the key it was given."""
    model = target.model
    price = {"size": options["size"], "quality": options["quality"]}
    hold = pricing.image_cost(model, target.multiplier, count=options["n"], **price)
    call_tags = tags.call_tags(request.headers.get(tags.HEADER), user=options.get("user", ""))
    metered = await meter.admit(
        principal, reference=request.bytespike_request_id, credits=hold, tags=call_tags
    )
    image_request = media.ImageRequest(
        prompt=options["prompt"],
        n=options["n"],
        size=options["size"] or "1024x1024",
        quality=options["quality"],
        output_format=options["output_format"],
        images=list(images),
        mask=mask,
    )
    started = time.monotonic()
    generate = sync_to_async(call, thread_sensitive=False)

    async def attempt(upstream: Upstream):
        return await generate(upstream.route, upstream.upstream_model, image_request)

    try:
        upstream, files = await asyncio.wait_for(
            first_answer(target, attempt, started=started), TIME_LIMIT_SECONDS
        )
    except TimeoutError:
        await metered.release()
        raise ApiError(504, "upstream_timeout", "The image took over 30 seconds.") from None
    except ApiError:
        await metered.release()
        raise
    except BaseException:
        await asyncio.shield(metered.release())
        raise
    artifacts = []
    if options["response_format"] != "b64_json":
        # Stored (uploaded, to a bucket) before the call is billed, so a storage failure is
        # free; in any thread, so the upload does not hold one of the database threads.
        try:
            store = sync_to_async(artifacts_prepare, thread_sensitive=False)
            artifacts = await store(account_id=principal.account_id, kind="image", files=files)
        except StorageUnavailable:
            await asyncio.shield(metered.release())
            raise ApiError(
                503, "storage_unavailable", "The images could not be stored; nothing was charged.",
                headers={"Retry-After": "5"},
            ) from None  # fmt: skip
        except BaseException:
            await asyncio.shield(metered.release())
            raise
    charge = pricing.image_cost(model, target.multiplier, count=len(files), **price)
    settlement = await metered.settle(
        charge,
        UsageFacts(
            model_id=model.pk,
            family=Family.IMAGE,
            protocol="images",
            api_key_id=principal.key_id,
            project_id=principal.project_id,
            group_id=principal.group_id,
            deployment_id=upstream.deployment_id,
            images=len(files),
            latency_ms=int((time.monotonic() - started) * 1000),
        ),
    )
    headers = {UPSTREAM_HEADER: upstream.name, **metered.headers(settlement.charged)}
    if options["response_format"] == "b64_json":
        data = [{"revised_prompt": options["prompt"], "b64_json": base64.b64encode(f.data).decode()}
                for f in files]  # fmt: skip
        return data, headers
    return await run_db(_render, request, artifacts, options), headers


def _render(request, artifacts, options) -> list[dict]:
    base_url = request.build_absolute_uri("/")
    data = []
    for artifact in artifacts:
        artifact.save()
        data.append(
            {
                "revised_prompt": options["prompt"],
                "url": artifact_url(artifact, base_url),
                "expires_at": iso_time(artifact.expires_at),
            }
        )
    return data


@dataplane_view(Protocol.OPENAI, methods=("POST",))
async def generations(request, principal: KeyPrincipal):
    body = json_body(request, MAX_JSON_BYTES)
    target = await _target(principal, body.get("model"))
    return await _serve(
        request, principal, target, image_options(body, target), media.generate_images
    )


async def _target(principal, slug) -> Target:
    if not isinstance(slug, str) or not slug:
        raise _invalid("Missing required parameter: 'model'.", "model")
    return await resolve_model_for(principal, slug)


def _image_bytes(upload, param: str) -> bytes:
    data = upload.read()
    try:
        Image.open(io.BytesIO(data)).verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _invalid(f"'{param}' must be a PNG, JPEG or WebP image.", param) from None
    return data


@dataplane_view(Protocol.OPENAI, methods=("POST",))
async def edits(request, principal: KeyPrincipal):
    if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "request_too_large", "The request body is over 50 MiB.")
    if not request.content_type.startswith("multipart/form-data"):
        raise _invalid("Send the images as multipart/form-data.", "image")
    fields, files = request.POST, request.FILES
    uploads = files.getlist("image") + files.getlist("image[]")
    if not uploads:
        raise _invalid("Missing required parameter: 'image'.", "image")
    if len(uploads) > MAX_INPUT_IMAGES:
        raise _invalid(f"Send at most {MAX_INPUT_IMAGES} images.", "image")
    images = [_image_bytes(upload, "image") for upload in uploads]
    mask = _image_bytes(files["mask"], "mask") if "mask" in files else None
    target = await _target(principal, fields.get("model"))
    options = image_options(fields, target)
    return await _serve(request, principal, target, options, media.edit_images, images, mask)
