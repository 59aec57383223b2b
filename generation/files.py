"""Generated images and videos: stored as artifacts in the "media" storage (a folder, or an
S3-compatible bucket: generation/storage.py), reached through signed URLs, served with HTTP
range requests so a <video> can seek, and deleted when they expire.

A URL carries only the artifact's random key and a signature with its time: no task, account or
upstream id. It works until the artifact expires (``BYTESPIKE_MEDIA_RETENTION_DAYS`` after it was
made; the API answers say when, as ``expires_at``); then it answers 410 Gone, and beat's
``artifacts_expire`` deletes the file. A bucket's files are streamed by the web process
(``BYTESPIKE_MEDIA_DELIVERY=proxy``) or reached by a redirect to a short-lived presigned URL
(``redirect``).
"""

import io
import logging
import re
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile
from django.http import (
    Http404,
    HttpResponse,
    HttpResponseGone,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from generation.models import Artifact
from generation.storage import media as storage

log = logging.getLogger(__name__)
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
EXPIRE_BATCH = 500


def retention() -> timedelta:
    return timedelta(days=settings.BYTESPIKE_MEDIA_RETENTION_DAYS)


def retention_text() -> str:
    """How long files are kept, in words: "24 hours", "7 days"."""
    hours = round(retention() / timedelta(hours=1))
    if hours % 24 or hours < 48:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{hours // 24} days"


def iso_time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class StorageUnavailable(Exception):
    """The media storage (the folder, or the bucket) refused a file: worth trying again."""


def artifacts_prepare(*, account_id: int, kind: str, files, task=None) -> list[Artifact]:
    """New artifacts for the generated files, stored, not yet saved; all or none: if one cannot
    be stored, those stored before it are deleted and StorageUnavailable is raised."""
    artifacts = []
    try:
        for media in files:
            artifacts.append(
                artifact_prepare(account_id=account_id, kind=kind, media=media, task=task)
            )
    except Exception as error:
        log.exception("could not store a generated %s", kind)
        try:
            storage.delete_many([artifact.file.name for artifact in artifacts])
        except Exception:
            log.exception("could not delete the files stored before")
        raise StorageUnavailable(str(error)) from error
    return artifacts


def artifact_prepare(*, account_id: int, kind: str, media, task=None) -> Artifact:
    """A new artifact with its file stored, not yet saved: storing waits on the disk or the
    bucket, not on the database, so async callers do it outside their database threads."""
    now = timezone.now()
    artifact = Artifact(
        account_id=account_id,
        task=task,
        kind=kind,
        mime_type=media.mime_type,
        size_bytes=len(media.data),
        width=media.width,
        height=media.height,
        duration_seconds=media.duration_seconds,
        created_at=now,
        expires_at=now + retention(),
    )
    extension = _EXTENSIONS.get(media.mime_type, "bin")
    artifact.file.save(f"{artifact.key}.{extension}", ContentFile(media.data), save=False)
    return artifact


def artifacts_discard(artifacts) -> None:
    """Delete artifacts nobody will see (a task cancelled while its outputs were stored)."""
    storage.delete_many([artifact.file.name for artifact in artifacts if artifact.file])
    Artifact.objects.filter(pk__in=[artifact.pk for artifact in artifacts]).delete()


def artifacts_expire(*, now: datetime | None = None, batches: int = 20) -> int:
    """Delete the files of expired artifacts, ``EXPIRE_BATCH`` at a time and at most
    ``batches`` batches a run (the next run goes on); returns how many were deleted.

    A task's artifact keeps its row without a file, so the task still lists its output, with its
    ``expires_at``; a sync image's row goes. Idempotent: a file already gone counts as deleted,
    and a file the storage could not delete stays listed for the next run."""
    now = now or timezone.now()
    deleted, failed = 0, set()
    for _ in range(batches):
        rows = list(
            Artifact.objects.filter(expires_at__lte=now)
            .exclude(file="")
            .exclude(pk__in=failed)  # tried in this run: they wait for the next one
            .order_by("expires_at", "pk")
            .values_list("pk", "file", "task_id")[:EXPIRE_BATCH]
        )
        if not rows:
            break
        gone = set(storage.delete_many([name for _, name, _ in rows]))
        done = [(pk, task_id) for pk, name, task_id in rows if name in gone]
        failed.update(pk for pk, name, _ in rows if name not in gone)
        Artifact.objects.filter(pk__in=[pk for pk, task_id in done if task_id is None]).delete()
        Artifact.objects.filter(pk__in=[pk for pk, task_id in done if task_id]).update(file="")
        deleted += len(done)
        if len(rows) < EXPIRE_BATCH:
            break
    if failed:
        log.warning(
            "%d expired media files could not be deleted; the next run retries", len(failed)
        )
    if deleted:
        log.info("deleted %d expired media files", deleted)
    return deleted


def artifact_path(artifact: Artifact) -> str:
    token = signing.TimestampSigner(salt=_SALT).sign(artifact.key)
    return reverse("file", args=[token])


def artifact_url(artifact: Artifact, base_url: str) -> str:
    return base_url.rstrip("/") + artifact_path(artifact)


class FileGone(Exception):
    """A valid link whose file has expired (or was deleted)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _artifact_for(token: str) -> Artifact:
    try:
        key = signing.TimestampSigner(salt=_SALT).unsign(token)
    except signing.BadSignature:
        raise Http404("This link is not valid.") from None
    kept = f"Files are kept for {retention_text()}."
    artifact = Artifact.objects.filter(key=key).first()
    if artifact is None:
        raise FileGone(f"This file no longer exists. {kept}")
    if not artifact.file or artifact.expires_at <= timezone.now():
        when = artifact.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        raise FileGone(f"This link expired at {when} and its file was deleted. {kept}")
    return artifact


def _gone(message: str) -> HttpResponse:
    response = HttpResponseGone(message + "\n", content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


async def _chunks(reader, length: int):
    """``length`` bytes of the reader, a chunk at a time, read off the event loop (in any
    thread: a bucket read waits on the network)."""
    read = sync_to_async(reader.read, thread_sensitive=False)
    try:
        remaining = length
        while remaining > 0:
            chunk = await read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        await sync_to_async(reader.close, thread_sensitive=False)()


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


def _redirect(artifact: Artifact) -> HttpResponse | None:
    """A 302 to the file's presigned URL, where the storage has them and delivery says so."""
    if settings.BYTESPIKE_MEDIA_DELIVERY != "redirect":
        return None
    left = (artifact.expires_at - timezone.now()).total_seconds()
    url = storage.direct_url(
        artifact.file.name, min(settings.BYTESPIKE_MEDIA_PRESIGN_SECONDS, max(int(left), 1))
    )
    if url is None:
        return None
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "no-store"  # the next visit gets a fresh signature
    return response


def _open(artifact: Artifact, start: int, length: int):
    if length <= 0:
        return io.BytesIO(b"")
    return storage.open_range(artifact.file.name, start, length)


@require_safe
async def serve_file(request, token: str):
    try:
        artifact = await sync_to_async(_artifact_for)(token)
    except FileGone as gone:
        return _gone(gone.message)
    redirect = await sync_to_async(_redirect, thread_sensitive=False)(artifact)
    if redirect is not None:
        return redirect
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
    try:
        reader = await sync_to_async(_open, thread_sensitive=False)(artifact, start, length)
    except FileNotFoundError:
        return _gone("This file no longer exists.")
    response = StreamingHttpResponse(
        _chunks(reader, length), status=status, content_type=artifact.mime_type
    )
    response["Content-Length"] = str(length)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    left = int((artifact.expires_at - timezone.now()).total_seconds())
    response["Cache-Control"] = f"private, max-age={min(3600, max(left, 0))}"
    return response
