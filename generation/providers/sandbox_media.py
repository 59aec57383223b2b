"""The built-in sandbox for images and videos: a sync httpx transport that answers the OpenAI
Images and Videos requests in-process, so tests and the demo run offline through the real
adapter code (media.py): request building, HTTP, decoding, error mapping. This module parses
the requests, applies the knobs, keeps video jobs in their ids and answers in OpenAI's shapes;
the pictures and videos themselves are drawn by sandbox_render.py.

    POST /images/generations   real PNG / JPEG / WebP images, rendered with Pillow
    POST /images/edits         the uploaded image really recoloured, only where the mask lets
    POST /videos               a job whose id carries everything needed to answer later
    GET  /videos/{id}          queued, then in progress, then completed (or failed), by the clock
    GET  /videos/{id}/content  a real H.264 MP4 rendered with PyAV
    DELETE /videos/{id}        {"id", "object": "video.deleted", "deleted": true}

Everything is deterministic for a request (prompt, seed, index, size). A video job is stateless:
its id is the compressed description of the job (submit time, run time, seconds, size, prompt,
seed, fate), so any process - several Celery workers polling - answers the same way, and
nothing is remembered between calls (a deleted job still answers GET).

Knobs, written anywhere in the prompt:
    [sandbox:status=503]   answer the request (image, or video submit) with this HTTP error
    [sandbox:timeout]      time out instead of answering
    [sandbox:fail]         the video job fails halfway through its run
    [sandbox:slow]         the video job takes twice as long
    [sandbox:seconds=N]    the video job takes N seconds (fractions allowed) instead
Settings (read with defaults, so they are optional): BYTESPIKE_SANDBOX_VIDEO_SECONDS (a video
job's run time, 6), BYTESPIKE_SANDBOX_FAILURE_RATE (the fraction of image requests answered 503
and of video jobs that fail), BYTESPIKE_SANDBOX_LATENCY_MS (before an image answer).
"""

import base64
import io
import json
import math
import random
import re
import time
import zlib

import httpx
from django.conf import settings
from PIL import Image, UnidentifiedImageError

from generation.providers import SandboxFaults
from generation.providers.sandbox_render import (
    VIDEO_FPS,
    edit_image,
    encode_image,
    render_image,
    render_video,
    video_dimensions,
    video_frame,
)

KNOB = re.compile(r"\[sandbox:(\w+)(?:=([^\]]*))?\]")
VIDEO_PATH = re.compile(r"/videos/(?P<id>[^/]+)(?P<content>/content)?$")
SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
JOB_PREFIX = "video_sb_"
MAX_JOB_ID = 480  # Task.upstream_id holds 500
MAX_PROMPT_KEPT = 300
IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}
MIN_SIDE, MAX_SIDE = 64, 4096
MAX_VIDEO_SECONDS = 60
DEFAULT_VIDEO_SIZE = "720x1280"  # the API's default
QUEUED_SHARE = 0.1  # of the run spent queued
FAIL_AT = 0.5  # a failing job fails halfway
ASSET_LIFETIME = 24 * 3600


def _now() -> float:
    return time.time()


class Refusal(Exception):
    """An OpenAI-style error answer."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str = ""):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def _error(status: int, message: str, param: str | None = None, code: str = "") -> httpx.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return httpx.Response(
        status,
        json={"error": {"message": message, "type": kind, "param": param, "code": code or None}},
    )


class SandboxMediaTransport(httpx.BaseTransport):
    def __init__(self, *, faults: SandboxFaults | None = None):
        self.faults = faults or SandboxFaults()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        path, method = request.url.path, request.method
        if method == "POST" and (failed := self._channel_fault(request)):
            return failed
        try:
            if method == "POST" and path.endswith("/images/generations"):
                return self._generate(request)
            if method == "POST" and path.endswith("/images/edits"):
                return self._edit(request)
            if method == "POST" and path.endswith("/videos"):
                return self._video_create(request)
            if match := VIDEO_PATH.search(path):
                job_id = match["id"]
                if method == "GET" and match["content"]:
                    return self._video_content(job_id, request.url.params.get("variant", "video"))
                if method == "GET":
                    return httpx.Response(200, json=video_object(_decode_job(job_id)))
                if method == "DELETE" and not match["content"]:
                    _decode_job(job_id)
                    return httpx.Response(
                        200, json={"id": job_id, "object": "video.deleted", "deleted": True}
                    )
        except Refusal as refusal:
            return _error(refusal.status, refusal.message, refusal.param, refusal.code)
        return _error(404, f"The sandbox does not serve {method} {path}.")

    def _channel_fault(self, request: httpx.Request) -> httpx.Response | None:
        """The channel's own faults, played on what submits work (polls and downloads of work
        already accepted are left alone)."""
        faults = self.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if random.random() < faults.timeout_rate:
            raise httpx.ReadTimeout("sandbox timeout", request=request)
        if faults.in_outage(time.time()) or random.random() < faults.failure_rate:
            return _error(503, "Sandbox failure (the channel's faults).")
        return None

    # --- images ---

    def _generate(self, request: httpx.Request) -> httpx.Response:
        try:
            body = json.loads(request.content or b"{}")
        except ValueError:
            raise Refusal(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise Refusal(400, "The request body must be a JSON object.")
        prompt = _prompt(body.get("prompt"))
        _image_knobs(prompt, request)
        n = _int(body.get("n", 1), "n", 1, 10)
        width, height = _size(body.get("size"), default=(1024, 1024))
        fmt = _output_format(body.get("output_format"))
        seed = _seed(body.get("seed"))
        text = strip_knobs(prompt)
        data = [
            {"b64_json": _b64(encode_image(render_image(text, seed, index, width, height), fmt))}
            for index in range(n)
        ]
        return httpx.Response(200, json=_images_answer(data, prompt, fmt, width, height, 0))

    def _edit(self, request: httpx.Request) -> httpx.Response:
        fields, files = _form(request)
        prompt = _prompt(fields.get("prompt"))
        _image_knobs(prompt, request)
        n = _int(fields.get("n", 1), "n", 1, 10)
        fmt = _output_format(fields.get("output_format"))
        seed = _seed(fields.get("seed"))
        uploads = [data for name, data in files if name in ("image", "image[]")]
        if not uploads:
            raise Refusal(
                400, "Missing required parameter: 'image'.", "image", "missing_required_parameter"
            )
        if len(uploads) > 16:
            raise Refusal(400, "At most 16 images can be edited at once.", "image")
        images = [_open_image(data, "image") for data in uploads]
        base = images[0]
        mask = None
        mask_uploads = [data for name, data in files if name == "mask"]
        if mask_uploads:
            mask = _open_image(mask_uploads[0], "mask")
            if "A" not in mask.getbands() and "transparency" not in mask.info:
                raise Refusal(400, "The mask must be an image with an alpha channel.", "mask")
            if mask.size != base.size:
                raise Refusal(400, "The mask and the image must have the same dimensions.", "mask")
        size = fields.get("size") or "auto"
        width, height = _size(size, default=base.size)
        text = strip_knobs(prompt)
        keep_alpha = fmt != "JPEG" and _has_alpha(base)
        data = []
        for index in range(n):
            edited = edit_image(base, images[1:], mask, text, seed, index)
            if edited.size != (width, height):
                edited = edited.resize((width, height), Image.Resampling.LANCZOS)
            if not keep_alpha:
                edited = edited.convert("RGB")
            data.append({"b64_json": _b64(encode_image(edited, fmt))})
        answer = _images_answer(data, prompt, fmt, width, height, len(images))
        return httpx.Response(200, json=answer)

    # --- videos ---

    def _video_create(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                fields = json.loads(request.content or b"{}")
            except ValueError:
                raise Refusal(400, "We could not parse the JSON body of your request.") from None
            if not isinstance(fields, dict):
                raise Refusal(400, "The request body must be a JSON object.")
        else:
            fields, _ = _form(request)
        prompt = _prompt(fields.get("prompt"))
        knobs = knobs_in(prompt)
        if "timeout" in knobs:
            raise httpx.ReadTimeout("sandbox timeout", request=request)
        _status_knob(knobs)
        seconds = _int(fields.get("seconds", 4), "seconds", 1, MAX_VIDEO_SECONDS)
        width, height = _size(fields.get("size") or DEFAULT_VIDEO_SIZE, default=(720, 1280))
        seed = _seed(fields.get("seed"))
        run = float(getattr(settings, "BYTESPIKE_SANDBOX_VIDEO_SECONDS", 6.0))
        if "seconds" in knobs:
            try:
                run = float(knobs["seconds"])
            except ValueError:
                raise Refusal(400, "[sandbox:seconds=N] needs a number.", "prompt") from None
        if "slow" in knobs:
            run *= 2
        run = min(max(run, 0.0), 24 * 3600.0)
        rate = float(getattr(settings, "BYTESPIKE_SANDBOX_FAILURE_RATE", 0) or 0)
        fails = "fail" in knobs or random.random() < rate
        job = {
            "t": round(_now(), 3),
            "r": round(run, 3),
            "s": seconds,
            "w": width,
            "h": height,
            "m": str(fields.get("model") or "sora-2")[:40],
            "e": seed,
            "f": 1 if fails else 0,
            "p": strip_knobs(prompt)[:MAX_PROMPT_KEPT],
        }
        return httpx.Response(200, json=video_object({**job, "id": encode_job(job)}))

    def _video_content(self, job_id: str, variant: str) -> httpx.Response:
        job = _decode_job(job_id)
        status = video_object(job)["status"]
        if status == "failed":
            raise Refusal(404, "The video failed; it has no content.", code="video_not_found")
        if status != "completed":
            raise Refusal(
                409,
                "The video is not ready yet; poll GET /videos/{id} until it is completed.",
                code="video_not_ready",
            )
        width, height = video_dimensions(job["w"], job["h"])
        if variant == "thumbnail":
            frame = video_frame(
                job["p"], job["e"], job["s"], width, height, job["s"] * VIDEO_FPS // 2
            )
            return httpx.Response(
                200, content=encode_image(frame, "WEBP"), headers={"content-type": "image/webp"}
            )
        if variant != "video":
            raise Refusal(400, f"The sandbox has no '{variant}' variant.", "variant")
        data = render_video(job["p"], job["e"], job["s"], width, height)
        return httpx.Response(200, content=data, headers={"content-type": "video/mp4"})


# --- request parsing ---------------------------------------------------------------------------


def knobs_in(text: str) -> dict:
    return {name: value for name, value in KNOB.findall(text)}


def strip_knobs(text: str) -> str:
    return re.sub(r"\s{2,}", " ", KNOB.sub("", text)).strip()


def _status_knob(knobs: dict) -> None:
    if "status" in knobs:
        try:
            status = int(knobs["status"])
        except ValueError:
            status = 500
        if 400 <= status <= 599:
            raise Refusal(status, "Sandbox failure, as asked.")


def _image_knobs(prompt: str, request: httpx.Request) -> None:
    knobs = knobs_in(prompt)
    latency = float(getattr(settings, "BYTESPIKE_SANDBOX_LATENCY_MS", 0) or 0)
    if latency > 0:
        time.sleep(latency / 1000)
    if "timeout" in knobs:
        raise httpx.ReadTimeout("sandbox timeout", request=request)
    _status_knob(knobs)
    if random.random() < float(getattr(settings, "BYTESPIKE_SANDBOX_FAILURE_RATE", 0) or 0):
        raise Refusal(503, "Sandbox failure (injected).")


def _prompt(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Refusal(
            400, "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter"
        )
    if len(value) > 32000:
        raise Refusal(400, "The prompt is too long (at most 32000 characters).", "prompt")
    return value


def _int(value, param: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Refusal(400, f"Invalid value for '{param}': expected an integer.", param) from None
    if not low <= number <= high:
        raise Refusal(400, f"Invalid value for '{param}': must be {low} to {high}.", param)
    return number


def _seed(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Refusal(400, "Invalid value for 'seed': expected an integer.", "seed") from None


def _size(value, *, default: tuple[int, int]) -> tuple[int, int]:
    if value in (None, "", "auto"):
        return default
    match = SIZE.match(str(value))
    if not match:
        raise Refusal(400, f"Invalid size '{value}': expected WIDTHxHEIGHT.", "size")
    width, height = int(match[1]), int(match[2])
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise Refusal(
            400, f"Invalid size '{value}': each side must be {MIN_SIDE} to {MAX_SIDE}.", "size"
        )
    return width, height


def _output_format(value) -> str:
    fmt = IMAGE_FORMATS.get(str(value or "png").lower())
    if fmt is None:
        raise Refusal(400, f"Invalid output_format '{value}': png, jpeg or webp.", "output_format")
    return fmt


def _form(request: httpx.Request) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """Parse a multipart/form-data body: plain fields, and (name, bytes) file parts in order."""
    content_type = request.headers.get("content-type", "")
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or not match:
        raise Refusal(400, "The request must be multipart/form-data.")
    delimiter = b"--" + match[1].encode("latin-1")
    fields: dict[str, str] = {}
    files: list[tuple[str, bytes]] = []
    for part in request.content.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        part = part.removeprefix(b"\r\n")
        head, separator, body = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        body = body.removesuffix(b"\r\n")
        disposition = next(
            (
                line
                for line in head.decode("utf-8", "replace").split("\r\n")
                if line.lower().startswith("content-disposition:")
            ),
            "",
        )
        name = re.search(r'\bname="([^"]*)"', disposition)
        if name is None:
            continue
        if re.search(r'\bfilename="', disposition):
            files.append((name[1], body))
        else:
            fields[name[1]] = body.decode("utf-8", "replace")
    return fields, files


def _open_image(data: bytes, param: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise Refusal(
            400,
            f"Invalid input {param}: the file must be a PNG, JPEG or WebP image.",
            param,
            "invalid_image_file",
        ) from None
    if image.format not in ("PNG", "JPEG", "WEBP"):
        raise Refusal(
            400,
            f"Invalid input {param}: the file must be a PNG, JPEG or WebP image.",
            param,
            "invalid_image_format",
        )
    return image


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or "transparency" in image.info


# --- image answers -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _images_answer(data: list, prompt: str, fmt: str, width: int, height: int, inputs: int):
    text_tokens = math.ceil(len(prompt) / 4)
    image_tokens = inputs * 258
    output_tokens = len(data) * math.ceil(width * height / 1000)
    return {
        "created": int(_now()),
        "data": data,
        "output_format": fmt.lower(),
        "size": f"{width}x{height}",
        "usage": {
            "input_tokens": text_tokens + image_tokens,
            "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
            "output_tokens": output_tokens,
            "total_tokens": text_tokens + image_tokens + output_tokens,
        },
    }


# --- video jobs --------------------------------------------------------------------------------


def encode_job(job: dict) -> str:
    """The job's id: its description, compressed and base64url-encoded, kept under the length
    a task can store (the prompt is shortened until it fits)."""
    job = dict(job)
    while True:
        raw = json.dumps(job, separators=(",", ":"), ensure_ascii=False).encode()
        token = base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")
        if len(JOB_PREFIX) + len(token) <= MAX_JOB_ID or not job["p"]:
            return JOB_PREFIX + token
        job["p"] = job["p"][: len(job["p"]) * 4 // 5]


def _decode_job(job_id: str) -> dict:
    missing = Refusal(404, f"No video with id '{job_id[:80]}'.", code="video_not_found")
    if not job_id.startswith(JOB_PREFIX) or len(job_id) > 1000:
        raise missing
    token = job_id[len(JOB_PREFIX) :]
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        job = json.loads(raw)
        job["id"] = job_id
        for key, kind in (("t", float), ("r", float), ("s", int), ("w", int), ("h", int)):
            job[key] = kind(job[key])
    except (ValueError, TypeError, KeyError, zlib.error):
        raise missing from None
    return job


def _progress_at(fraction: float) -> int:
    """Progress while in progress: an ease-out curve from 1 to 99."""
    share = (fraction - QUEUED_SHARE) / (1 - QUEUED_SHARE)
    share = min(max(share, 0.0), 1.0)
    return min(99, max(1, round(100 * (1 - (1 - share) ** 2))))


def video_object(job: dict, now: float | None = None) -> dict:
    """The OpenAI video object for a job at ``now``."""
    now = _now() if now is None else now
    started, run = job["t"], job["r"]
    fraction = (now - started) / run if run > 0 else 1.0
    answer = {
        "id": job.get("id") or encode_job(job),
        "object": "video",
        "model": job["m"],
        "status": "queued",
        "progress": 0,
        "created_at": int(started),
        "completed_at": None,
        "expires_at": None,
        "error": None,
        "remixed_from_video_id": None,
        "seconds": str(job["s"]),
        "size": f"{job['w']}x{job['h']}",
    }
    if job.get("f") and fraction >= FAIL_AT:
        answer["status"] = "failed"
        answer["progress"] = _progress_at(FAIL_AT)
        answer["completed_at"] = int(started + run * FAIL_AT)
        answer["error"] = {
            "code": "video_generation_failed",
            "message": "The sandbox video generation failed, as asked.",
        }
    elif fraction >= 1:
        answer["status"] = "completed"
        answer["progress"] = 100
        answer["completed_at"] = int(started + run)
        answer["expires_at"] = int(started + run) + ASSET_LIFETIME
    elif fraction >= QUEUED_SHARE:
        answer["status"] = "in_progress"
        answer["progress"] = _progress_at(fraction)
    return answer
