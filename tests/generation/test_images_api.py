"""Synchronous images: generations and edits, billed per image, free when they fail."""

import base64
import io
import json

import pytest
from PIL import Image

from billing.invariants import wallet_problems
from billing.models import Hold, UsageRecord, Wallet
from billing.pricing import image_cost
from catalogue.models import AIModel
from tests.conftest import read_body
from tests.factories import funded_key
from tests.fuzz import asgi
from tests.protocols import png

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(world):
    return funded_key(world.account, world.owner, credits=20)[1]


def generate(client, key, **body):
    body = {"model": "gpt-image-1", "prompt": "A paper boat", **body}
    return client.post(
        "/v1/images/generations",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )


def test_generations_answer_urls_billed_per_image(client, world, key):
    response = generate(client, key, n=2, size="1024x1024", quality="low")
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["created"], int) and len(body["data"]) == 2
    url = body["data"][0]["url"]
    assert url.startswith("http://testserver/files/") and body["data"][0]["revised_prompt"]
    image = client.get(url.removeprefix("http://testserver"))
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    data = read_body(image)
    assert Image.open(io.BytesIO(data)).size == (1024, 1024)
    model = AIModel.objects.get(slug="gpt-image-1")
    record = UsageRecord.objects.get()
    assert record.images == 2 and record.protocol == "images"
    assert record.credits == image_cost(model, 1, count=2, size="1024x1024", quality="low")
    assert wallet_problems(world.account.pk) == []


def test_a_host_outside_allowed_hosts_is_refused_before_anything_is_spent(
    world, key, keep_test_connection
):
    """Issue 11: the answer's links are built from Host; a Host Django refuses failed the call
    after it was charged. (Through the production ASGI app: the data plane has no middleware.)"""
    body = json.dumps({"model": "gpt-image-1", "prompt": "A paper boat"}).encode()
    headers = [
        (b"host", b"evil.example"),
        (b"authorization", f"Bearer {key}".encode()),
        (b"content-type", b"application/json"),
    ]
    response = asgi.request("POST", "/v1/images/generations", headers, body)
    assert response.status == 400
    assert json.loads(response.body)["error"]["type"] == "invalid_request_error"
    assert not UsageRecord.objects.exists()
    assert Wallet.objects.get(account=world.account).balance == 20 * 1_000_000


def test_b64_json_and_output_formats(client, key):
    body = generate(client, key, response_format="b64_json", output_format="webp").json()
    image = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    assert image.format == "WEBP"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"n": 9}, "n"),
        ({"n": "many"}, "n"),
        ({"size": "13x13"}, "size"),
        ({"quality": "ultra"}, "quality"),
        ({"response_format": "gif"}, "response_format"),
        ({"model": "gpt-4.1"}, "model"),
    ],
)
def test_bad_image_requests_are_400_and_hold_nothing(client, world, key, body, param):
    response = generate(client, key, **body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not Hold.objects.exists()


def test_a_failed_generation_is_free(client, world, key):
    before = Wallet.objects.get(account=world.account).balance
    response = generate(client, key, prompt="[sandbox:status=500] boat")
    assert response.status_code == 502
    assert Wallet.objects.get(account=world.account).balance == before
    assert not UsageRecord.objects.exists()
    assert Hold.objects.get().status == "released"


def edit(client, key, files, **fields):
    return client.post(
        "/v1/images/edits",
        data={"model": "gpt-image-1", "prompt": "Make it blue", **fields, **files},
        headers={"Authorization": f"Bearer {key}"},
    )


def test_edits_take_an_image_and_a_mask(client, world, key):
    source = io.BytesIO(png(128, 128))
    source.name = "source.png"
    mask_image = Image.new("RGBA", (128, 128), (0, 0, 0, 255))
    mask_image.paste((0, 0, 0, 0), (0, 0, 64, 128))  # transparent left half: edit here
    mask = io.BytesIO()
    mask_image.save(mask, "PNG")
    mask.seek(0)
    mask.name = "mask.png"
    response = edit(client, key, {"image": source, "mask": mask}, response_format="b64_json")
    assert response.status_code == 200, response.content
    out = Image.open(io.BytesIO(base64.b64decode(response.json()["data"][0]["b64_json"])))
    out = out.convert("RGBA").resize((128, 128))
    assert out.getpixel((100, 64))[:3] == (200, 30, 30)  # kept where the mask is opaque
    assert out.getpixel((20, 64))[:3] != (200, 30, 30)  # edited where it is transparent
    assert UsageRecord.objects.get().images == 1


def test_edits_refuse_what_is_not_an_image(client, world, key):
    text = io.BytesIO(b"not an image at all")
    text.name = "notes.png"
    response = edit(client, key, {"image": text})
    assert response.status_code == 400 and response.json()["error"]["param"] == "image"
    missing = edit(client, key, {})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "image"
    assert not Hold.objects.exists()


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "multipart/form-data; boundary=x", "text/plain"]
)
def test_edits_refuse_a_body_that_is_not_multipart_in_the_envelope(client, key, content_type):
    # Found by fuzzing: a multipart body Django cannot parse was its HTML 400.
    response = client.post(
        "/v1/images/edits", b" ", content_type=content_type, headers={"x-api-key": key}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_param"
    assert response["X-Request-ID"].startswith("req_")
    assert not Hold.objects.exists()
