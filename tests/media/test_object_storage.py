"""Generated media on an S3-compatible bucket (moto in server mode, over real HTTP): images and
task outputs land in the bucket, their ByteSpike links serve them by proxy (with ranges) or by a
redirect to a presigned URL, and retention deletes them in the bucket as in the local folder."""

import json
import runpy
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing.invariants import wallet_problems
from billing.models import UsageRecord, Wallet
from generation import files, jobs, services
from generation.models import Artifact, Task
from generation.storage import LocalMediaStorage
from generation.storage_s3 import S3MediaStorage
from tests.conftest import read_body
from tests.factories import funded_key, funded_keys
from tests.media.conftest import ACCESS_KEY, SECRET_KEY
from tests.processes import ROOT
from tests.tasks import run_until_done

pytestmark = pytest.mark.django_db
SIGV4_QUERY = {
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
}


@pytest.fixture
def key(world):
    return funded_key(world.account, world.owner, credits=20)[1]


def generate_image(client, key, **body) -> dict:
    body = {"model": "gpt-image-1", "prompt": "A paper boat", "size": "1024x1024", **body}
    response = client.post(
        "/v1/images/generations",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.content
    (item,) = response.json()["data"]
    return item


def local_path(url: str) -> str:
    return url.removeprefix("http://testserver")


def test_a_generated_image_lands_in_the_bucket_and_its_link_proxies_it_with_ranges(
    client, key, s3_media, settings
):
    before = timezone.now()
    item = generate_image(client, key)
    (object_key,) = s3_media.keys()
    artifact = Artifact.objects.get()
    assert object_key == artifact.file.name and object_key.startswith("artifacts/")
    assert object_key.endswith(f"{artifact.key}.png")
    assert not (settings.MEDIA_ROOT / object_key).exists()  # nothing in the local folder
    stored = s3_media.read(object_key)
    assert stored[:8] == b"\x89PNG\r\n\x1a\n" and len(stored) == artifact.size_bytes

    # The answer says when the link and its file expire: a day after it was made.
    expires = parse_datetime(item["expires_at"])
    assert item["expires_at"].endswith("Z") and expires == artifact.expires_at
    assert before + timedelta(days=1) <= expires <= timezone.now() + timedelta(days=1)

    path = local_path(item["url"])
    whole = client.get(path)
    assert whole.status_code == 200 and whole["Content-Type"] == "image/png"
    assert whole["Accept-Ranges"] == "bytes" and read_body(whole) == stored
    part = client.get(path, headers={"Range": "bytes=8-107"})
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 8-107/{len(stored)}"
    assert read_body(part) == stored[8:108] and part["Content-Length"] == "100"
    tail = client.get(path, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and read_body(tail) == stored[-10:]
    beyond = client.get(path, headers={"Range": f"bytes={len(stored)}-"})
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{len(stored)}"
    assert client.get(path[:-3] + "xyz").status_code == 404  # a forged signature


def test_redirect_delivery_sends_a_short_lived_presigned_url_with_only_the_sigv4_query(
    client, key, s3_media, settings
):
    settings.BYTESPIKE_MEDIA_DELIVERY = "redirect"
    settings.BYTESPIKE_MEDIA_PRESIGN_SECONDS = 300
    path = local_path(generate_image(client, key)["url"])
    (object_key,) = s3_media.keys()
    stored = s3_media.read(object_key)

    response = client.get(path)
    assert response.status_code == 302 and response["Cache-Control"] == "no-store"
    location = response["Location"]
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == s3_media.endpoint
    assert parts.path == f"/{s3_media.name}/{object_key}"  # path-style on a custom endpoint
    query = dict(parse_qsl(parts.query))
    assert set(query) == SIGV4_QUERY  # no other parameter, no secret
    assert query["X-Amz-Expires"] == "300" and query["X-Amz-Credential"].startswith(ACCESS_KEY)
    assert SECRET_KEY not in location

    # The client follows it to the bucket, which answers ranges itself.
    assert httpx.get(location).content == stored
    part = httpx.get(location, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == stored[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(stored)}"
    assert httpx.get(location, headers={"Range": f"bytes={len(stored) + 5}-"}).status_code == 416

    # A presigned URL never outlives the file.
    Artifact.objects.update(expires_at=timezone.now() + timedelta(seconds=30))
    query = dict(parse_qsl(urlsplit(client.get(path)["Location"]).query))
    assert 1 <= int(query["X-Amz-Expires"]) <= 30


def test_a_video_task_run_by_the_job_lands_in_the_bucket(
    client, world, s3_media, sandbox_clock, settings
):
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    key = funded_keys(world.account, world.owner)["gemini-default"]
    body = {"model": "veo-3-fast", "params": {"prompt": "A lighthouse [sandbox:seconds=0.3]"}}
    submitted = client.post(
        "/v1/tasks/submit", json.dumps(body), "application/json", headers={"x-api-key": key}
    )
    task = run_until_done(Task.objects.get(public_id=submitted.json()["task_id"]), sandbox_clock)
    assert task.status == "completed"
    query = client.get(f"/v1/tasks/query?task_id={task.public_id}", headers={"x-api-key": key})
    (video,) = query.json()["output"]
    (object_key,) = s3_media.keys()
    assert object_key.endswith(".mp4")
    artifact = task.artifacts.get()
    assert video["expires_at"] == files.iso_time(artifact.expires_at)
    stored = s3_media.read(object_key)
    path = local_path(video["url"])
    whole = client.get(path)
    assert whole["Content-Type"] == "video/mp4" and read_body(whole) == stored
    part = client.get(path, headers={"Range": "bytes=4-7"})
    assert part.status_code == 206 and read_body(part) == b"ftyp"

    settings.BYTESPIKE_MEDIA_DELIVERY = "redirect"
    assert httpx.get(client.get(path)["Location"]).content == stored


def test_expired_media_is_deleted_from_the_bucket_and_its_links_answer_410(
    client, world, key, s3_media, sandbox_clock, settings
):
    image_path = local_path(generate_image(client, key)["url"])
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    video_key = funded_keys(world.account, world.owner)["gemini-default"]
    body = {"model": "veo-3-fast", "params": {"prompt": "Waves [sandbox:seconds=0.3]"}}
    submitted = client.post(
        "/v1/tasks/submit", json.dumps(body), "application/json", headers={"x-api-key": video_key}
    )
    task = run_until_done(Task.objects.get(public_id=submitted.json()["task_id"]), sandbox_clock)
    video_path = local_path(task_output(client, task, video_key)["url"])
    assert len(s3_media.keys()) == 2
    client.force_login(world.owner)
    card = client.get(reverse("generation:task-card", args=[task.public_id])).text
    assert "<video" in card and "kept until" in card
    assert jobs.artifacts_expire() == 0  # nothing has expired yet

    # Past their expiry the links are gone at once, before beat deletes anything.
    Artifact.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    gone = client.get(image_path)
    assert gone.status_code == 410 and b"expired" in gone.content
    assert b"kept for 24 hours" in gone.content
    assert len(s3_media.keys()) == 2

    assert jobs.artifacts_expire() == 2
    assert s3_media.keys() == []
    assert jobs.artifacts_expire() == 0  # idempotent
    for path in (image_path, video_path):
        assert client.get(path).status_code == 410
        assert client.get(path, headers={"Range": "bytes=0-9"}).status_code == 410
    # The task still lists its output, with when it expired; the sync image's row is gone.
    (kept,) = Artifact.objects.all()
    assert kept.task_id == task.pk and not kept.file
    output = task_output(client, task, video_key)
    assert parse_datetime(output["expires_at"]) < timezone.now()
    settings.BYTESPIKE_MEDIA_DELIVERY = "redirect"
    assert client.get(video_path).status_code == 410  # no redirect to a deleted object
    # The console's card says the video expired instead of showing a broken player.
    client.force_login(world.owner)
    shown = client.get(reverse("generation:task-card", args=[task.public_id])).text
    assert "This video expired on" in shown and "<video" not in shown


def task_output(client, task, key) -> dict:
    query = client.get(f"/v1/tasks/query?task_id={task.public_id}", headers={"x-api-key": key})
    (output,) = query.json()["output"]
    return output


def test_expiry_runs_in_batches_and_leaves_what_the_bucket_refused_for_the_next_run(
    client, key, s3_media, monkeypatch
):
    for _ in range(5):
        generate_image(client, key)
    assert len(s3_media.keys()) == 5
    Artifact.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    monkeypatch.setattr(files, "EXPIRE_BATCH", 2)
    assert files.artifacts_expire(batches=1) == 2  # one batch a run at most
    assert len(s3_media.keys()) == 3 and Artifact.objects.count() == 3

    # The bucket refuses the oldest: the others are deleted all the same, it waits.
    refused = Artifact.objects.order_by("expires_at", "pk").first().file.name
    real = S3MediaStorage.delete_many
    with monkeypatch.context() as patch:
        kept = lambda self, names: real(self, [n for n in names if n != refused])  # noqa: E731
        patch.setattr(S3MediaStorage, "delete_many", kept)
        assert files.artifacts_expire() == 2
    assert s3_media.keys() == [refused] and Artifact.objects.count() == 1
    assert files.artifacts_expire() == 1
    assert s3_media.keys() == [] and not Artifact.objects.exists()


def test_the_local_folder_stays_the_default_and_expires_the_same_way(client, key, settings):
    assert type(storages["media"]) is LocalMediaStorage
    item = generate_image(client, key)
    artifact = Artifact.objects.get()
    on_disk = settings.MEDIA_ROOT / artifact.file.name
    assert on_disk.read_bytes() == read_body(client.get(local_path(item["url"])))
    settings.BYTESPIKE_MEDIA_DELIVERY = "redirect"  # a folder has no direct URL: still served
    assert client.get(local_path(item["url"])).status_code == 200

    Artifact.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(local_path(item["url"])).status_code == 410
    assert jobs.artifacts_expire() == 1
    assert not on_disk.exists() and not Artifact.objects.exists()
    assert client.get(local_path(item["url"])).status_code == 410


def test_retention_is_a_setting_in_days(client, key, settings):
    settings.BYTESPIKE_MEDIA_RETENTION_DAYS = 7
    item = generate_image(client, key)
    expires = parse_datetime(item["expires_at"])
    assert timedelta(days=7) - timedelta(minutes=1) < expires - timezone.now() <= timedelta(days=7)
    assert files.retention_text() == "7 days"
    settings.BYTESPIKE_MEDIA_RETENTION_DAYS = 0.5
    assert files.retention_text() == "12 hours"


MEDIA_VARIABLES = (
    "AWS_STORAGE_BUCKET_NAME",
    "AWS_S3_ENDPOINT_URL",
    "AWS_S3_REGION_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "BYTESPIKE_MEDIA_STORAGE",
    "BYTESPIKE_MEDIA_DELIVERY",
    "BYTESPIKE_MEDIA_RETENTION_DAYS",
)


def settings_of(**env) -> dict:
    """What console/settings.py makes of these variables (the module run afresh)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in MEDIA_VARIABLES:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            module = runpy.run_path(str(ROOT / "console" / "settings.py"))
        except ImproperlyConfigured as error:
            return {"error": str(error)}
    return {
        "media": module["STORAGES"]["media"],
        "img": module["SECURE_CSP"]["img-src"],
        "video": module["SECURE_CSP"]["media-src"],
        "beat": module["CELERY_BEAT_SCHEDULE"]["expire-media"]["task"],
    }


def test_settings_choose_the_bucket_from_the_standard_aws_variables():
    local = settings_of()
    assert local["media"] == {"BACKEND": "generation.storage.LocalMediaStorage"}
    assert local["beat"] == "generation.jobs.artifacts_expire"

    bucket = {
        "AWS_STORAGE_BUCKET_NAME": "bytespike-media",
        "AWS_S3_ENDPOINT_URL": "https://minio.internal:9000",
        "AWS_S3_REGION_NAME": "eu-west-1",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    s3 = settings_of(**bucket)
    assert s3["media"]["BACKEND"] == "generation.storage_s3.S3MediaStorage"
    options = s3["media"]["OPTIONS"]
    assert options["bucket_name"] == "bytespike-media" and options["region_name"] == "eu-west-1"
    assert options["endpoint_url"] == "https://minio.internal:9000"
    assert SECRET_KEY not in json.dumps(s3)  # boto3 reads the credentials itself
    assert s3["img"] == local["img"]  # proxied: pages load media from the site only

    redirect = settings_of(**bucket, BYTESPIKE_MEDIA_DELIVERY="redirect")
    for directive in ("img", "video"):
        assert "https://minio.internal:9000" in redirect[directive]
    aws = settings_of(AWS_STORAGE_BUCKET_NAME="b1", AWS_S3_REGION_NAME="eu-west-1",
                      BYTESPIKE_MEDIA_DELIVERY="redirect")  # fmt: skip
    assert {"https://b1.s3.amazonaws.com", "https://b1.s3.eu-west-1.amazonaws.com"} <= set(
        aws["img"]
    )

    assert settings_of(BYTESPIKE_MEDIA_STORAGE="local", **bucket)["media"] == local["media"]
    for wrong in (
        {"BYTESPIKE_MEDIA_STORAGE": "s3"},  # no bucket
        {"BYTESPIKE_MEDIA_DELIVERY": "teleport"},
        {"BYTESPIKE_MEDIA_RETENTION_DAYS": "0"},
    ):
        assert "BYTESPIKE_MEDIA_STORAGE is local or s3" in settings_of(**wrong)["error"]


def test_an_image_the_bucket_refuses_is_a_503_and_costs_nothing(client, world, key, s3_media,
                                                                settings):  # fmt: skip
    settings.STORAGES = {**settings.STORAGES, "media": s3_media.storage(bucket_name="missing")}
    response = client.post(
        "/v1/images/generations",
        data=json.dumps({"model": "gpt-image-1", "prompt": "A paper boat"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert not UsageRecord.objects.exists() and not Artifact.objects.exists()
    assert Wallet.objects.get(account=world.account).balance == 20 * 1_000_000
    assert wallet_problems(world.account.pk) == []


def test_a_task_whose_outputs_the_bucket_refuses_tries_again_at_its_next_poll(
    client, world, s3_media, sandbox_clock, settings
):
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    key = funded_keys(world.account, world.owner)["gemini-default"]
    body = {"model": "veo-3-fast", "params": {"prompt": "Rain [sandbox:seconds=0.3]"}}
    submitted = client.post(
        "/v1/tasks/submit", json.dumps(body), "application/json", headers={"x-api-key": key}
    )
    task = Task.objects.get(public_id=submitted.json()["task_id"])
    working = settings.STORAGES
    settings.STORAGES = {**working, "media": s3_media.storage(bucket_name="missing")}
    services.task_advance(task.pk, task.lease)  # claimed and submitted
    sandbox_clock.advance(5)  # the video is ready upstream
    assert services.task_advance(task.pk, task.lease) > 0  # not stored: polled again later
    task.refresh_from_db()
    assert task.status == "running" and not UsageRecord.objects.exists()

    settings.STORAGES = working  # the bucket is back
    assert services.task_advance(task.pk, task.lease) is None
    task.refresh_from_db()
    assert task.status == "completed" and len(s3_media.keys()) == 1
    assert UsageRecord.objects.get(request_id=task.public_id).seconds == 4
