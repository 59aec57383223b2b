"""Where generated images and videos are kept: Django's ``storages["media"]``.

By default a folder under ``BYTESPIKE_DATA_DIR/media`` (``LocalMediaStorage``); with a bucket
configured, an S3-compatible bucket (``generation.storage_s3.S3MediaStorage``, which imports
boto3 only when chosen). Both answer the few questions generation/files.py asks beyond Django's
storage API: a byte range as a stream, a short-lived direct URL (a bucket only), and deleting
many files at once.
"""

import logging

from django.core.files.storage import FileSystemStorage, storages
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.functional import LazyObject, empty

log = logging.getLogger(__name__)


class LocalMediaStorage(FileSystemStorage):
    """The media folder (``MEDIA_ROOT``): the embedded default, one machine (or one volume)."""

    def open_range(self, name: str, start: int, length: int):
        """A readable (``read(n)``, ``close()``) of the file's bytes from ``start``; the caller
        reads ``length`` of them. FileNotFoundError if the file is gone."""
        handle = self.open(name, "rb")
        handle.seek(start)
        return handle

    def direct_url(self, name: str, seconds: int) -> str | None:
        """A URL the client may fetch the file from directly: none for a local folder."""
        return None

    def delete_many(self, names: list[str]) -> list[str]:
        """Delete the files; the names deleted (or already gone). Failures are logged and left
        for the next run."""
        done = []
        for name in names:
            try:
                self.delete(name)  # a file already gone is not an error
            except OSError:
                log.exception("could not delete the media file %s", name)
                continue
            done.append(name)
        return done


class _MediaStorage(LazyObject):
    def _setup(self):
        self._wrapped = storages["media"]


media = _MediaStorage()


def media_storage():
    """The media storage, for ``Artifact.file`` (a callable, so migrations name it instead of
    serialising a storage, and settings changes reach the field)."""
    return media


@receiver(setting_changed)
def _storages_changed(*, setting, **kwargs):
    # Django forgets its storages on this change; the lazy wrapper must too.
    if setting == "STORAGES":
        media._wrapped = empty
