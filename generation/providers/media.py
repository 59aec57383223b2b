"""Image and video upstreams, synchronous: the task pipeline calls these from Celery workers and
the sync image route from threads.

They speak the OpenAI wire formats (OpenAI and OpenAI-compatible channels):
    Images   POST {base}/images/generations (JSON), POST {base}/images/edits (multipart)
    Videos   POST {base}/videos (multipart), GET {base}/videos/{id},
             GET {base}/videos/{id}/content (binary MP4), DELETE {base}/videos/{id}
through one pooled sync httpx client per channel configuration and process (clients.py). A
channel in sandbox mode is answered in-process by sandbox_media.SandboxMediaTransport, whatever
its kind.

Every failure is an UpstreamError already mapped to what the caller sees (docs/gateway.md,
"Errors from upstreams"); neither the provider's raw error body nor our secret gets through.
"""

import base64
import binascii
import io
import logging
from dataclasses import dataclass, field

import httpx

from catalogue.models import MEDIA_KINDS, ChannelKind
from generation.providers import (
    ChannelRoute,
    UpstreamError,
    redact,
    upstream_error_for,
    upstream_errors,
)
from generation.providers.clients import close_clients as close_clients  # for media's users
from generation.providers.clients import sync_client, url_client

logger = logging.getLogger(__name__)

# Reading an image answer or a video file can take a while; everything else is quick.
SLOW = httpx.Timeout(connect=10.0, read=120.0, write=60.0, pool=10.0)
QUICK = httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=10.0)
MAX_VIDEO_BYTES = 512 * 1024 * 1024
MAX_IMAGE_URL_BYTES = 64 * 1024 * 1024
# Sizes for an aspect ratio when the request names no size (Sora's sizes where it has them).
ASPECT_SIZES = {"16:9": "1280x720", "9:16": "720x1280", "1:1": "720x720"}
IMAGE_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
VIDEO_STATES = {
    "queued": "queued",
    "pending": "queued",
    "submitted": "queued",
    "in_progress": "in_progress",
    "processing": "in_progress",
    "running": "in_progress",
    "completed": "completed",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "failed",
}


@dataclass
class MediaFile:
    data: bytes
    mime_type: str
    width: int
    height: int
    duration_seconds: float | None = None


@dataclass
class ImageRequest:
    prompt: str
    n: int = 1
    size: str = "1024x1024"
    quality: str = ""
    output_format: str = "png"  # png | jpeg | webp
    seed: int | None = None
    images: list[bytes] = field(default_factory=list)
    mask: bytes | None = None


@dataclass
class VideoRequest:
    prompt: str
    seconds: int
    size: str = ""
    aspect_ratio: str = ""
    seed: int | None = None


@dataclass
class VideoJob:
    id: str
    state: str  # queued | in_progress | completed | failed
    progress: int = 0
    error: str = ""
    error_code: str = ""


# --- Clients -----------------------------------------------------------------------------------


def client_for(route: ChannelRoute) -> httpx.Client:
    if not route.sandbox and route.kind not in MEDIA_KINDS:
        raise UpstreamError(
            502,
            "upstream_error",
            f"Image and video generation is not supported by this channel ({route.kind}).",
        )
    return sync_client(route)


def _send(route: ChannelRoute, method: str, path: str, *, timeout: httpx.Timeout, **kwargs):
    """Send one request; the response (any status) or UpstreamError for transport failures."""
    client = client_for(route)
    with upstream_errors(route, transient=True):
        return client.request(method, path, timeout=timeout, **kwargs)


def _raise_for_status(route: ChannelRoute, response: httpx.Response, not_found: str = "") -> None:
    status = response.status_code
    if status < 400:
        return
    logger.warning("media upstream %s answered %s", route.kind, status)
    if status == 404 and not_found:
        raise UpstreamError(502, "upstream_error", not_found)
    error = upstream_error_for(status, response.content, response.headers.get("retry-after"))
    raise _scrubbed(route, error)


def _scrubbed(route: ChannelRoute, error: UpstreamError) -> UpstreamError:
    """The provider's words may quote our secret in a form redact() does not know."""
    if route.secret and route.secret in error.message:
        error.message = error.message.replace(route.secret, "[redacted]")
        error.args = (error.message,)
    return error


def _json(response: httpx.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        raise UpstreamError(502, "upstream_error", "The upstream answer was not JSON.") from None
    if not isinstance(data, dict):
        raise UpstreamError(502, "upstream_error", "The upstream answer was not understood.")
    return data


# --- Images ------------------------------------------------------------------------------------


def _always_b64(model: str) -> bool:
    """GPT image models always answer with b64_json and refuse ``response_format``."""
    return model.startswith(("gpt-image", "chatgpt-image"))


def _format_options(route: ChannelRoute, model: str, request: ImageRequest) -> dict:
    options: dict = {}
    if not _always_b64(model):
        options["response_format"] = "b64_json"
    if not model.startswith("dall-e") and request.output_format:
        options["output_format"] = request.output_format
    if request.quality:
        options["quality"] = request.quality
    if request.seed is not None and (route.sandbox or route.kind != ChannelKind.OPENAI):
        # Not an OpenAI parameter (it would be refused there); compatible servers take it.
        options["seed"] = request.seed
    return options


def generate_images(
    route: ChannelRoute, upstream_model: str, request: ImageRequest
) -> list[MediaFile]:
    body = {
        "model": upstream_model,
        "prompt": request.prompt,
        "n": request.n,
        "size": request.size,
        **_format_options(route, upstream_model, request),
    }
    response = _send(route, "POST", "/images/generations", json=body, timeout=SLOW)
    _raise_for_status(route, response)
    return _images_from(route, _json(response))


def edit_images(route: ChannelRoute, upstream_model: str, request: ImageRequest) -> list[MediaFile]:
    client_for(route)  # an unsupported channel is refused before anything else
    if not request.images:
        raise UpstreamError(400, "invalid_param", "An image to edit is required.")
    fields = {"model": upstream_model, "prompt": request.prompt, "n": request.n}
    if request.size:
        fields["size"] = request.size
    fields.update(_format_options(route, upstream_model, request))
    files: list[tuple[str, tuple]] = [(name, (None, str(value))) for name, value in fields.items()]
    name = "image" if len(request.images) == 1 else "image[]"
    for index, data in enumerate(request.images):
        files.append((name, _upload(f"image_{index}", data)))
    if request.mask is not None:
        files.append(("mask", _upload("mask", request.mask)))
    response = _send(route, "POST", "/images/edits", files=files, timeout=SLOW)
    _raise_for_status(route, response)
    return _images_from(route, _json(response))


def _upload(stem: str, data: bytes) -> tuple[str, bytes, str]:
    """A file part named and typed after what the bytes are (the API checks the type). What is
    not an image is sent as it is, for the provider to refuse in its own words."""
    kind = _image_kind(data)
    if kind is None:
        return (f"{stem}.bin", data, "application/octet-stream")
    mime = IMAGE_MIME.get(kind, "application/octet-stream")
    extension = {"JPEG": "jpg"}.get(kind, kind.lower())
    return (f"{stem}.{extension}", data, mime)


def _image_kind(data: bytes) -> str | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:
        return None


def _images_from(route: ChannelRoute, answer: dict) -> list[MediaFile]:
    items = answer.get("data")
    if not isinstance(items, list) or not items:
        raise UpstreamError(502, "upstream_error", "The upstream answer held no images.")
    files = []
    for item in items:
        if not isinstance(item, dict):
            raise UpstreamError(502, "upstream_error", "The upstream answer was not understood.")
        if item.get("b64_json"):
            try:
                data = base64.b64decode(item["b64_json"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise UpstreamError(
                    502, "upstream_error", "The upstream image was not valid base64."
                ) from None
        elif item.get("url"):
            data = _fetch_url(route, str(item["url"]))
        else:
            raise UpstreamError(502, "upstream_error", "The upstream answer held no image data.")
        files.append(image_file(data))
    return files


def image_file(data: bytes) -> MediaFile:
    """Describe image bytes, or UpstreamError if they are not an image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            kind, width, height = image.format, image.width, image.height
    except Exception:
        raise UpstreamError(
            502, "upstream_error", "The upstream answer was not an image."
        ) from None
    mime = IMAGE_MIME.get(kind or "")
    if mime is None:
        raise UpstreamError(502, "upstream_error", "The upstream image format is not supported.")
    return MediaFile(data=data, mime_type=mime, width=width, height=height)


def _fetch_url(route: ChannelRoute, url: str) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise UpstreamError(502, "upstream_error", "The upstream image URL was not usable.")
    with (
        upstream_errors(route, "The upstream image could not be fetched."),
        url_client().stream("GET", url, timeout=SLOW) as response,
    ):
        if response.status_code >= 400:
            raise UpstreamError(502, "upstream_error", "The upstream image could not be fetched.")
        return _read_capped(response, MAX_IMAGE_URL_BYTES)


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks, total = [], 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > limit:
            raise UpstreamError(502, "upstream_error", "The upstream file is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


# --- Videos ------------------------------------------------------------------------------------


def size_for(request: VideoRequest) -> str:
    """The WxH to ask for: the request's size, else one for its aspect ratio, else none."""
    if request.size:
        return request.size
    ratio = request.aspect_ratio.strip()
    if ratio in ASPECT_SIZES:
        return ASPECT_SIZES[ratio]
    if ratio:
        try:
            w, h = (float(part) for part in ratio.split(":"))
        except ValueError:
            return ""
        if w <= 0 or h <= 0:
            return ""
        # 720 on the short side, even numbers (video encoders need them).
        scale = 720 / min(w, h)
        return f"{round(w * scale / 2) * 2}x{round(h * scale / 2) * 2}"
    return ""


def video_submit(route: ChannelRoute, upstream_model: str, request: VideoRequest) -> VideoJob:
    fields = {"model": upstream_model, "prompt": request.prompt, "seconds": str(request.seconds)}
    if size := size_for(request):
        fields["size"] = size
    if request.seed is not None and (route.sandbox or route.kind != ChannelKind.OPENAI):
        fields["seed"] = str(request.seed)
    files = [(name, (None, value)) for name, value in fields.items()]
    response = _send(route, "POST", "/videos", files=files, timeout=QUICK)
    _raise_for_status(route, response)
    return _job_from(route, _json(response))


def video_status(route: ChannelRoute, job_id: str) -> VideoJob:
    response = _send(route, "GET", f"/videos/{_job_path(job_id)}", timeout=QUICK)
    _raise_for_status(route, response, not_found="The upstream provider has no such video job.")
    return _job_from(route, _json(response))


def video_download(route: ChannelRoute, job_id: str) -> MediaFile:
    client = client_for(route)
    path = f"/videos/{_job_path(job_id)}/content"
    with (
        upstream_errors(route, "The upstream provider dropped the download."),
        client.stream("GET", path, timeout=SLOW) as response,
    ):
        if response.status_code >= 400:
            response.read()
            _raise_for_status(route, response, not_found="The upstream video is not available.")
        data = _read_capped(response, MAX_VIDEO_BYTES)
    return video_file(data)


def video_cancel(route: ChannelRoute, job_id: str) -> bool:
    """Ask the upstream to drop the job; False when it cannot (gone, finished, refused)."""
    response = _send(route, "DELETE", f"/videos/{_job_path(job_id)}", timeout=QUICK)
    if response.status_code in (400, 404, 409):
        return False
    _raise_for_status(route, response)
    try:
        data = response.json()
    except ValueError:
        return True
    return bool(data.get("deleted", True)) if isinstance(data, dict) else True


def _job_path(job_id: str) -> str:
    from urllib.parse import quote

    if not job_id:
        raise UpstreamError(502, "upstream_error", "No upstream video job id.")
    return quote(job_id, safe="")


def _job_from(route: ChannelRoute, data: dict) -> VideoJob:
    job_id = data.get("id")
    status = VIDEO_STATES.get(str(data.get("status", "")).lower())
    if not isinstance(job_id, str) or not job_id or status is None:
        raise UpstreamError(502, "upstream_error", "The upstream video job was not understood.")
    try:
        progress = int(data.get("progress") or 0)
    except (TypeError, ValueError):
        progress = 0
    progress = 100 if status == "completed" else max(0, min(progress, 100))
    message, code = "", ""
    if status == "failed":
        error = data.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or "")
            message = str(error.get("message") or "")
        elif isinstance(error, str):
            message = error
        message = redact(message) if message else "The upstream provider could not make the video."
        if route.secret:
            message = message.replace(route.secret, "[redacted]")
        code = redact(code)[:64] or "video_generation_failed"
    return VideoJob(id=job_id, state=status, progress=progress, error=message, error_code=code)


def video_file(data: bytes) -> MediaFile:
    """Describe video bytes (size and duration read with PyAV), or UpstreamError."""
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            width, height = stream.width, stream.height
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = None
            names = set(container.format.name.split(","))
    except Exception:
        raise UpstreamError(502, "upstream_error", "The upstream answer was not a video.") from None
    if not width or not height:
        raise UpstreamError(502, "upstream_error", "The upstream answer was not a video.")
    mime = "video/mp4" if "mp4" in names else "video/webm" if "webm" in names else "video/mp4"
    duration = round(duration, 3) if duration is not None else None
    return MediaFile(
        data=data, mime_type=mime, width=width, height=height, duration_seconds=duration
    )
