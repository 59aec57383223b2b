"""A real S3-compatible server for the media tests: moto in server mode on 127.0.0.1 and a free
port, started once per test process; each test gets a bucket of its own."""

import logging
import uuid
from dataclasses import dataclass

import pytest

ACCESS_KEY = "AKIABYTESPIKETEST0001"
SECRET_KEY = "bytespike-test-secret-never-in-a-url"
REGION = "us-east-1"


@dataclass
class Bucket:
    client: object  # a boto3 S3 client on the server
    name: str
    endpoint: str

    def keys(self) -> list[str]:
        answer = self.client.list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in answer.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def storage(self, **options) -> dict:
        """STORAGES["media"] on this bucket, as console/settings.py builds it from AWS_*."""
        return {
            "BACKEND": "generation.storage_s3.S3MediaStorage",
            "OPTIONS": {
                "bucket_name": self.name,
                "endpoint_url": self.endpoint,
                "region_name": REGION,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "signature_version": "s3v4",
                "default_acl": None,
                "file_overwrite": True,
                **options,
            },
        }

    def env(self) -> dict:
        """The environment that puts a process's media in this bucket."""
        return {
            "AWS_STORAGE_BUCKET_NAME": self.name,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_S3_REGION_NAME": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }


@pytest.fixture(scope="session")
def s3_endpoint():
    """The URL of a moto S3 server running in this test process (a thread), for this process
    and the processes it starts."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint) -> Bucket:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(signature_version="s3v4"),
    )
    name = f"media-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return Bucket(client, name, s3_endpoint)


@pytest.fixture
def s3_media(settings, bucket) -> Bucket:
    """This test's media in its bucket, delivered by proxy (the default)."""
    settings.STORAGES = {**settings.STORAGES, "media": bucket.storage()}
    settings.BYTESPIKE_MEDIA_STORAGE = "s3"
    settings.BYTESPIKE_MEDIA_DELIVERY = "proxy"
    return bucket
