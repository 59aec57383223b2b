"""Generated media in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, ...) through
django-storages: objects are private, read by ranged GETs (proxy) or short-lived presigned URLs
(redirect), and deleted in batches of up to 1,000 keys."""

import logging

from botocore.exceptions import ClientError
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

log = logging.getLogger(__name__)
_DELETE_BATCH = 1000  # the most one DeleteObjects request takes


class S3MediaStorage(S3Storage):
    def _key(self, name: str) -> str:
        return self._normalize_name(clean_name(name))

    def open_range(self, name: str, start: int, length: int):
        """The object's bytes ``start`` to ``start + length - 1``, as a stream with ``read(n)``
        and ``close()``: only that range crosses the network. FileNotFoundError if it is gone."""
        try:
            answer = self.connection.meta.client.get_object(
                Bucket=self.bucket_name,
                Key=self._key(name),
                Range=f"bytes={start}-{start + max(length, 1) - 1}",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise FileNotFoundError(name) from None
            raise
        return answer["Body"]

    def direct_url(self, name: str, seconds: int) -> str | None:
        """A presigned GET of the object, valid ``seconds``: the standard SigV4 query
        (X-Amz-Algorithm, -Credential, -Date, -Expires, -SignedHeaders, -Signature, and
        -Security-Token with temporary credentials) and nothing else."""
        return self.url(name, expire=max(int(seconds), 1))

    def delete_many(self, names: list[str]) -> list[str]:
        """Delete the objects, a DeleteObjects request per 1,000; the names deleted (a missing
        key counts as deleted). Keys the bucket refused are logged and left for the next run."""
        done = []
        client = self.connection.meta.client
        for offset in range(0, len(names), _DELETE_BATCH):
            batch = names[offset : offset + _DELETE_BATCH]
            keys = {self._key(name): name for name in batch}
            try:
                answer = client.delete_objects(
                    Bucket=self.bucket_name,
                    Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
                )
            except ClientError:
                log.exception("could not delete %d media objects", len(batch))
                continue
            errors = answer.get("Errors", [])
            for error in errors:
                log.warning("the bucket did not delete %s: %s %s",
                            error.get("Key"), error.get("Code"), error.get("Message"))  # fmt: skip
            failed = {error.get("Key") for error in errors}
            done += [name for key, name in keys.items() if key not in failed]
        return done
