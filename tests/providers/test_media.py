"""The image and video adapters against the documented OpenAI wire shapes (mocked with respx):
what is sent, how answers are read, and how failures are mapped."""

import base64
import email
import email.policy
import io
import json
import logging

import httpx
import pytest
import respx
from PIL import Image

from generation.providers import ChannelRoute, UpstreamError
from generation.providers.media import (
    ImageRequest,
    VideoRequest,
    client_for,
    close_clients,
    edit_images,
    generate_images,
    size_for,
    video_cancel,
    video_download,
    video_status,
    video_submit,
)
from generation.providers.sandbox_render import render_video

BASE = "https://api.openai.test/v1"
SECRET = "sk-live-Very5ecretValue0123456789"
ODD_SECRET = "zz-custom-token-ABCDEF"  # not a shape redact() knows


@pytest.fixture
def upstream():
    """The upstream, mocked: a router of its own, gone with the test."""
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture(autouse=True, scope="module")
def _fresh_clients():
    """Clients are kept between these tests (respx mocks below them); not beyond."""
    close_clients()
    yield
    close_clients()


def route(kind="openai", secret=SECRET, pk=7) -> ChannelRoute:
    return ChannelRoute(pk=pk, kind=kind, sandbox=False, base_url=BASE, secret=secret)


def picture(fmt="PNG", size=(32, 24), colour=(10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def form(request: httpx.Request) -> list[tuple[str, str | None, str, bytes]]:
    """A multipart body as (name, filename, content type, bytes), read by the stdlib."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + request.content, policy=email.policy.HTTP)
    assert message.is_multipart()
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_filename(),
            part.get_content_type(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


def fields(request: httpx.Request) -> dict[str, str]:
    return {name: data.decode() for name, filename, _, data in form(request) if filename is None}


VIDEO = {
    "id": "video_68d7512d07848190b3e45da0ecbebcde004da08e1e0678d5",
    "object": "video",
    "created_at": 1758941485,
    "status": "queued",
    "model": "sora-2",
    "progress": 0,
    "seconds": "8",
    "size": "1280x720",
}


# --- images ---


def test_generations_send_json_with_auth_and_decode_b64(upstream):
    png = picture(size=(40, 30))
    call = upstream.post(f"{BASE}/images/generations").respond(
        200, json={"created": 1, "data": [{"b64_json": b64(png)}, {"b64_json": b64(png)}]}
    )
    request = ImageRequest(prompt="A boat", n=2, size="1024x1024", quality="high", seed=4)
    files = generate_images(route(), "gpt-image-1", request)

    sent = call.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert json.loads(sent.content) == {
        "model": "gpt-image-1",
        "prompt": "A boat",
        "n": 2,
        "size": "1024x1024",
        "quality": "high",
        "output_format": "png",
    }  # no response_format (GPT image models refuse it), no seed (not an OpenAI parameter)
    assert [(f.mime_type, f.width, f.height, f.data) for f in files] == [
        ("image/png", 40, 30, png)
    ] * 2
    assert files[0].duration_seconds is None


def test_dalle_asks_for_b64_json_and_compatible_channels_get_the_seed(upstream):
    jpeg = picture("JPEG")
    call = upstream.post(f"{BASE}/images/generations").respond(
        200, json={"data": [{"b64_json": b64(jpeg), "revised_prompt": "x"}]}
    )
    generate_images(route(), "dall-e-3", ImageRequest(prompt="p", output_format="jpeg"))
    body = json.loads(call.calls.last.request.content)
    assert body["response_format"] == "b64_json" and "output_format" not in body

    files = generate_images(
        route("openai_compatible", pk=8), "flux-dev", ImageRequest(prompt="p", seed=9)
    )
    body = json.loads(call.calls.last.request.content)
    assert body["seed"] == 9 and body["response_format"] == "b64_json"
    assert files[0].mime_type == "image/jpeg"  # what the bytes are, not what was asked


def test_url_answers_are_fetched_without_our_credentials(upstream):
    webp = picture("WEBP", size=(20, 20))
    upstream.post(f"{BASE}/images/generations").respond(
        200, json={"data": [{"url": "https://cdn.example.test/img/1.webp"}]}
    )
    fetch = upstream.get("https://cdn.example.test/img/1.webp").respond(200, content=webp)
    files = generate_images(route("openai_compatible"), "some-model", ImageRequest(prompt="p"))
    assert "authorization" not in fetch.calls.last.request.headers
    assert (files[0].mime_type, files[0].width) == ("image/webp", 20)


@pytest.mark.parametrize(
    "answer",
    [
        {"data": [{"b64_json": b64(b"<html>not an image</html>")}]},
        {"data": [{"b64_json": "%%% not base64 %%%"}]},
        {"data": []},
        {"unexpected": True},
    ],
)
def test_answers_that_are_not_images_are_refused(upstream, answer):
    upstream.post(f"{BASE}/images/generations").respond(200, json=answer)
    with pytest.raises(UpstreamError) as caught:
        generate_images(route(), "gpt-image-1", ImageRequest(prompt="p"))
    assert (caught.value.status, caught.value.code) == (502, "upstream_error")


def test_edits_send_multipart_with_images_and_mask(upstream):
    first, second, mask = picture(), picture("JPEG"), picture(size=(32, 24))
    call = upstream.post(f"{BASE}/images/edits").respond(
        200, json={"data": [{"b64_json": b64(first)}]}
    )
    request = ImageRequest(
        prompt="Add a hat", n=1, size="1024x1536", images=[first, second], mask=mask
    )
    files = edit_images(route(), "gpt-image-1", request)
    assert files[0].width == 32

    sent = call.calls.last.request
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    parts = form(sent)
    assert fields(sent) == {
        "model": "gpt-image-1",
        "prompt": "Add a hat",
        "n": "1",
        "size": "1024x1536",
        "output_format": "png",
    }
    uploads = [(name, ctype, data) for name, filename, ctype, data in parts if filename]
    assert uploads == [
        ("image[]", "image/png", first),
        ("image[]", "image/jpeg", second),
        ("mask", "image/png", mask),
    ]


def test_a_single_edit_image_is_sent_as_image_and_dalle2_gets_response_format(upstream):
    call = upstream.post(f"{BASE}/images/edits").respond(
        200, json={"data": [{"b64_json": b64(picture())}]}
    )
    edit_images(route(), "dall-e-2", ImageRequest(prompt="p", images=[picture()]))
    sent = call.calls.last.request
    assert [name for name, filename, _, _ in form(sent) if filename] == ["image"]
    assert fields(sent)["response_format"] == "b64_json"


# --- videos ---


def test_video_submit_sends_multipart_and_reads_the_job(upstream):
    call = upstream.post(f"{BASE}/videos").respond(200, json=VIDEO)
    job = video_submit(route(), "sora-2", VideoRequest(prompt="A cat", seconds=8, size="1280x720"))
    assert (job.id, job.state, job.progress, job.error) == (VIDEO["id"], "queued", 0, "")
    sent = call.calls.last.request
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert fields(sent) == {
        "model": "sora-2",
        "prompt": "A cat",
        "seconds": "8",
        "size": "1280x720",
    }


@pytest.mark.parametrize(
    ("ratio", "size"),
    [("16:9", "1280x720"), ("9:16", "720x1280"), ("4:3", "960x720"), ("", None)],
)
def test_video_aspect_ratio_becomes_a_size(upstream, ratio, size):
    call = upstream.post(f"{BASE}/videos").respond(200, json=VIDEO)
    video_submit(route(), "sora-2", VideoRequest(prompt="p", seconds=4, aspect_ratio=ratio))
    assert fields(call.calls.last.request).get("size") == size


def test_size_wins_over_aspect_ratio():
    assert size_for(VideoRequest(prompt="p", seconds=4, size="1792x1024", aspect_ratio="9:16")) == (
        "1792x1024"
    )


def test_video_status_progress_and_failure(upstream):
    url = f"{BASE}/videos/{VIDEO['id']}"
    upstream.get(url).mock(
        side_effect=[
            httpx.Response(200, json={**VIDEO, "status": "in_progress", "progress": 42}),
            httpx.Response(200, json={**VIDEO, "status": "completed", "progress": 100}),
            httpx.Response(
                200,
                json={
                    **VIDEO,
                    "status": "failed",
                    "progress": 37,
                    "error": {
                        "code": "moderation_blocked",
                        "message": f"Blocked (key {SECRET})",
                    },
                },
            ),
        ]
    )
    job = video_status(route(), VIDEO["id"])
    assert (job.state, job.progress) == ("in_progress", 42)
    assert video_status(route(), VIDEO["id"]).state == "completed"
    failed = video_status(route(), VIDEO["id"])
    assert (failed.state, failed.error_code) == ("failed", "moderation_blocked")
    assert failed.error.startswith("Blocked") and SECRET not in failed.error


def test_video_download_reads_size_and_duration(upstream):
    mp4 = render_video("a test", 1, 2, 320, 180)
    call = upstream.get(f"{BASE}/videos/{VIDEO['id']}/content").respond(
        200, content=mp4, headers={"content-type": "video/mp4"}
    )
    file = video_download(route(), VIDEO["id"])
    assert call.calls.last.request.headers["authorization"] == f"Bearer {SECRET}"
    assert (file.mime_type, file.width, file.height) == ("video/mp4", 320, 180)
    assert file.duration_seconds == pytest.approx(2.0, abs=0.2)
    assert file.data == mp4


def test_video_download_of_something_else_is_refused(upstream):
    upstream.get(f"{BASE}/videos/{VIDEO['id']}/content").respond(200, content=b"<html>oops</html>")
    with pytest.raises(UpstreamError) as caught:
        video_download(route(), VIDEO["id"])
    assert caught.value.status == 502


def test_video_cancel_deletes_and_tolerates_gone_jobs(upstream):
    url = f"{BASE}/videos/{VIDEO['id']}"
    call = upstream.delete(url).mock(
        side_effect=[
            httpx.Response(
                200, json={"id": VIDEO["id"], "object": "video.deleted", "deleted": True}
            ),
            httpx.Response(404, json={"error": {"message": "Video not found"}}),
        ]
    )
    assert video_cancel(route(), VIDEO["id"]) is True
    assert call.calls.last.request.headers["authorization"] == f"Bearer {SECRET}"
    assert video_cancel(route(), VIDEO["id"]) is False


def test_job_ids_are_escaped_in_paths(upstream):
    call = upstream.get(f"{BASE}/videos/a%2F..%2Fb").respond(200, json={**VIDEO, "id": "a/../b"})
    assert video_status(route(), "a/../b").id == "a/../b"
    assert call.called


# --- errors ---


def _error_body(message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "code": None}}


@pytest.mark.parametrize("status", [401, 403])
def test_our_credentials_refused_is_a_502_without_details(upstream, status, caplog):
    caplog.set_level(logging.DEBUG)
    upstream.post(f"{BASE}/images/generations").respond(
        status, json=_error_body(f"Incorrect API key provided: {SECRET}.")
    )
    with pytest.raises(UpstreamError) as caught:
        generate_images(route(), "gpt-image-1", ImageRequest(prompt="p"))
    error = caught.value
    assert (error.status, error.code) == (502, "upstream_error")
    assert SECRET not in error.message and "Incorrect" not in error.message
    assert SECRET not in caplog.text


def test_bad_requests_keep_the_providers_words_without_secrets(upstream):
    upstream.post(f"{BASE}/videos").respond(
        400, json=_error_body(f"Invalid size; key {SECRET} and token {ODD_SECRET}")
    )
    with pytest.raises(UpstreamError) as caught:
        video_submit(
            route(secret=ODD_SECRET), "sora-2", VideoRequest(prompt="p", seconds=4, size="1x1")
        )
    error = caught.value
    assert (error.status, error.code) == (400, "invalid_param")
    assert "Invalid size" in error.message
    assert SECRET not in error.message and ODD_SECRET not in error.message


def test_rate_limits_pass_through_with_retry_after(upstream):
    upstream.post(f"{BASE}/images/edits").respond(
        429, json=_error_body("Slow down"), headers={"retry-after": "7"}
    )
    with pytest.raises(UpstreamError) as caught:
        edit_images(route(), "gpt-image-1", ImageRequest(prompt="p", images=[picture()]))
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (
        429,
        "rate_limit_exceeded",
        "7",
    )


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_502(upstream, status):
    upstream.get(f"{BASE}/videos/{VIDEO['id']}").respond(status, text="<html>boom</html>")
    with pytest.raises(UpstreamError) as caught:
        video_status(route(), VIDEO["id"])
    assert (caught.value.status, caught.value.code) == (502, "upstream_error")
    assert "boom" not in caught.value.message


def test_unknown_jobs_are_502(upstream):
    upstream.get(f"{BASE}/videos/video_x").respond(404, json=_error_body("Video not found"))
    with pytest.raises(UpstreamError) as caught:
        video_status(route(), "video_x")
    assert caught.value.status == 502 and "video" in caught.value.message


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
        (httpx.ConnectTimeout("slow"), 504, "upstream_timeout"),
        (httpx.ConnectError("refused"), 502, "upstream_error"),
        (httpx.RemoteProtocolError("dropped"), 502, "upstream_error"),
    ],
)
def test_transport_failures(upstream, failure, status, code):
    upstream.post(f"{BASE}/images/generations").mock(side_effect=failure)
    upstream.get(f"{BASE}/videos/{VIDEO['id']}/content").mock(side_effect=failure)
    for call in (
        lambda: generate_images(route(), "gpt-image-1", ImageRequest(prompt="p")),
        lambda: video_download(route(), VIDEO["id"]),
    ):
        with pytest.raises(UpstreamError) as caught:
            call()
        assert (caught.value.status, caught.value.code) == (status, code)


def test_timeouts_are_the_documented_ones(upstream):
    call = upstream.post(f"{BASE}/images/generations").respond(
        200, json={"data": [{"b64_json": b64(picture())}]}
    )
    status = upstream.get(f"{BASE}/videos/v1").respond(200, json={**VIDEO, "id": "v1"})
    generate_images(route(), "gpt-image-1", ImageRequest(prompt="p"))
    video_status(route(), "v1")
    slow = call.calls.last.request.extensions["timeout"]
    quick = status.calls.last.request.extensions["timeout"]
    assert (slow["connect"], slow["read"]) == (10.0, 120.0)
    assert (quick["connect"], quick["read"]) == (10.0, 30.0)


@pytest.mark.parametrize("kind", ["gemini", "anthropic"])
def test_channels_of_other_kinds_are_refused_when_live(upstream, kind):
    anything = upstream.route().respond(200, json={})
    live = route(kind)
    for call in (
        lambda: generate_images(live, "m", ImageRequest(prompt="p")),
        lambda: edit_images(live, "m", ImageRequest(prompt="p", images=[picture()])),
        lambda: video_submit(live, "m", VideoRequest(prompt="p", seconds=4)),
        lambda: video_status(live, "v"),
        lambda: video_download(live, "v"),
        lambda: video_cancel(live, "v"),
    ):
        with pytest.raises(UpstreamError) as caught:
            call()
        assert (caught.value.status, caught.value.code) == (502, "upstream_error")
        assert "not supported by this channel" in caught.value.message
    assert not anything.called


def test_clients_are_pooled_per_channel_configuration():
    assert client_for(route()) is client_for(route())
    assert client_for(route()) is not client_for(route(secret="sk-otherSecret12345678"))
    assert client_for(route("openai_compatible", pk=9)) is not client_for(route())
