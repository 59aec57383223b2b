"""Generated images and videos: stored as artifacts, reached through signed URLs that expire,
served with HTTP range requests so a <video> can seek.

A URL carries only the artifact's random key and a signature with its time: no task, account or
upstream id. It works for 24 hours.
"""

import re
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.core import signing
from django.core.files.base import ContentFile
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.http import require_safe

from generation.models import Artifact

URL_LIFETIME = timedelta(hours=24)
_SALT = "bytespike.artifact"
_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
CHUNK = 256 * 1024


def artifact_save(*, account_id: int, kind: str, media, task=None) -> Artifact:
    """Copy a generated file into our storage."""
    artifact = Artifact(
        account_id=account_id,
        task=task,
        kind=kind,
        mime_type=media.mime_type,
        size_bytes=len(media.data),
        width=media.width,
        height=media.height,
        duration_seconds=media.duration_seconds,
    )
    extension = _EXTENSIONS.get(media.mime_type, "bin")
    artifact.file.save(f"{artifact.key}.{extension}", ContentFile(media.data), save=False)
    artifact.save()
    return artifact


def artifact_path(artifact: Artifact) -> str:
    token = signing.TimestampSigner(salt=_SALT).sign(artifact.key)
    return reverse("file", args=[token])


def artifact_url(artifact: Artifact, base_url: str) -> str:
    return base_url.rstrip("/") + artifact_path(artifact)


def _artifact_for(token: str) -> Artifact:
    try:
        key = signing.TimestampSigner(salt=_SALT).unsign(
            token, max_age=URL_LIFETIME.total_seconds()
        )
    except signing.BadSignature:  # expired links included: they are simply gone
        raise Http404("This link is not valid or has expired.") from None
    artifact = Artifact.objects.filter(key=key).first()
    if artifact is None:
        raise Http404("This file no longer exists.")
    return artifact


async def _chunks(artifact: Artifact, start: int, length: int):
    """The file's bytes from ``start``, read a chunk at a time off the event loop."""
    handle = await sync_to_async(artifact.file.open)("rb")
    try:
        await sync_to_async(handle.seek)(start)
        remaining = length
        while remaining > 0:
            chunk = await sync_to_async(handle.read)(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        await sync_to_async(handle.close)()


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) of a single ``bytes=`` range; None for the whole file."""
    match = _RANGE.match(header.strip())
    if not match or not (match[1] or match[2]):
        return None
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
    else:  # the last N bytes
        start, end = max(size - int(match[2]), 0), size - 1
    return start, end


@require_safe
async def serve_file(request, token: str):
    artifact = await sync_to_async(_artifact_for)(token)
    size = artifact.size_bytes
    byte_range = _byte_range(request.headers.get("Range", ""), size)
    if byte_range is None:
        start, end, status = 0, size - 1, 200
    else:
        start, end = byte_range
        if start >= size or start > end:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        status = 206
    length = max(end - start + 1, 0)
    response = StreamingHttpResponse(
        _chunks(artifact, start, length), status=status, content_type=artifact.mime_type
    )
    response["Content-Length"] = str(length)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    return response
