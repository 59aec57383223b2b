"""The media sandbox, through the real adapters: real images and videos, deterministic, with
the knobs the demo and the task tests rely on."""

import io

import av
import httpx
import pytest
from PIL import Image, ImageChops

from generation.providers import ChannelRoute, UpstreamError
from generation.providers import sandbox_render as render
from generation.providers.media import (
    ImageRequest,
    VideoRequest,
    close_clients,
    edit_images,
    generate_images,
    video_cancel,
    video_download,
    video_status,
    video_submit,
)
from generation.providers.sandbox_media import SandboxMediaTransport

ROUTE = ChannelRoute(
    pk=901, kind="openai", sandbox=True, base_url="https://sandbox.invalid/v1", secret=""
)
MIME = {"png": ("image/png", "PNG"), "jpeg": ("image/jpeg", "JPEG"), "webp": ("image/webp", "WEBP")}


@pytest.fixture(autouse=True)
def _fresh(settings):
    settings.BYTESPIKE_SANDBOX_LATENCY_MS = 0
    settings.BYTESPIKE_SANDBOX_FAILURE_RATE = 0
    close_clients()
    yield
    close_clients()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def source(size=(96, 64)) -> Image.Image:
    """A busy RGB picture: a gradient with stripes."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    for x in range(0, size[0], 8):
        for y in range(size[1]):
            image.putpixel((x, y), (250, 10, 10))
    return image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# --- images ---


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_images_are_real_files_of_the_asked_size_and_count(fmt):
    request = ImageRequest(prompt="A lighthouse at dusk", n=3, size="320x200", output_format=fmt)
    files = generate_images(ROUTE, "gpt-image-1", request)
    mime, kind = MIME[fmt]
    assert len(files) == 3
    for file in files:
        image = opened(file.data)
        assert (image.format, image.size) == (kind, (320, 200))
        assert (file.mime_type, file.width, file.height) == (mime, 320, 200)
    assert len({file.data for file in files}) == 3  # each index is its own picture


def test_images_are_deterministic_and_follow_prompt_and_seed():
    def make(prompt, seed=None):
        request = ImageRequest(prompt=prompt, size="128x128", seed=seed)
        return generate_images(ROUTE, "gpt-image-1", request)[0].data

    assert make("a red fox") == make("a red fox")
    assert make("a red fox", seed=1) == make("a red fox", seed=1)
    assert make("a red fox") != make("a blue whale")
    assert make("a red fox", seed=1) != make("a red fox", seed=2)


def test_long_prompts_are_wrapped_and_any_kind_of_channel_works_in_sandbox():
    gemini = ChannelRoute(
        pk=902, kind="gemini", sandbox=True, base_url="https://x.invalid", secret=""
    )
    files = generate_images(gemini, "imagen", ImageRequest(prompt="word " * 400, size="64x64"))
    assert opened(files[0].data).size == (64, 64)


@pytest.mark.parametrize(
    "request_",
    [
        ImageRequest(prompt="p", size="10x10"),
        ImageRequest(prompt="p", size="5000x1024"),
        ImageRequest(prompt="p", size="big"),
        ImageRequest(prompt="p", n=11),
        ImageRequest(prompt="p", output_format="gif"),
        ImageRequest(prompt=" "),
    ],
)
def test_invalid_image_requests_are_400(request_):
    with pytest.raises(UpstreamError) as caught:
        generate_images(ROUTE, "gpt-image-1", request_)
    assert (caught.value.status, caught.value.code) == (400, "invalid_param")


def test_image_knobs_and_failure_rate(settings):
    cases = [
        ("[sandbox:status=503] p", 502),
        ("[sandbox:status=429] p", 429),
        ("[sandbox:timeout] p", 504),
    ]
    for prompt, status in cases:
        with pytest.raises(UpstreamError) as caught:
            generate_images(ROUTE, "gpt-image-1", ImageRequest(prompt=prompt, size="64x64"))
        assert caught.value.status == status
    settings.BYTESPIKE_SANDBOX_FAILURE_RATE = 1
    with pytest.raises(UpstreamError) as caught:
        generate_images(ROUTE, "gpt-image-1", ImageRequest(prompt="p", size="64x64"))
    assert caught.value.status == 502


def test_edits_change_pixels_only_where_the_mask_is_transparent():
    original = source()
    mask = Image.new("RGBA", original.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (48, 0, 96, 64))  # the right half is to be edited
    request = ImageRequest(prompt="make it blue", size="", images=[png(original)], mask=png(mask))
    file = edit_images(ROUTE, "gpt-image-1", request)[0]
    edited = opened(file.data).convert("RGB")
    assert edited.size == original.size == (file.width, file.height)

    difference = ImageChops.difference(original, edited)
    assert difference.crop((0, 0, 48, 64)).getbbox() is None  # kept exactly
    right = difference.crop((48, 0, 96, 64)).convert("L")
    changed = sum(right.histogram()[9:])  # pixels that moved by more than 8 levels
    assert changed > 0.8 * 48 * 64


def test_edits_without_mask_change_the_whole_image_and_resize():
    original = source((80, 80))
    request = ImageRequest(prompt="sepia", size="128x96", images=[png(original)], n=2)
    files = edit_images(ROUTE, "gpt-image-1", request)
    assert [(f.width, f.height) for f in files] == [(128, 96)] * 2
    assert files[0].data != files[1].data
    same_size = ImageRequest(prompt="sepia", size="", images=[png(original)])
    edited = opened(edit_images(ROUTE, "gpt-image-1", same_size)[0].data).convert("RGB")
    assert ImageChops.difference(original, edited).getbbox() == (0, 0, 80, 80)
    again = opened(edit_images(ROUTE, "gpt-image-1", same_size)[0].data).convert("RGB")
    assert ImageChops.difference(edited, again).getbbox() is None  # deterministic


def test_edits_take_several_images_and_formats():
    request = ImageRequest(
        prompt="a collage",
        size="",
        output_format="jpeg",
        images=[png(source()), png(source((40, 40)))],
    )
    file = edit_images(ROUTE, "gpt-image-1", request)[0]
    assert (file.mime_type, file.width, file.height) == ("image/jpeg", 96, 64)


@pytest.mark.parametrize(
    ("images", "mask"),
    [
        ([b"%PDF-1.4 definitely not a picture"], None),
        ([png(source()), b"GIF? no, text"], None),
        ([png(source())], b"not a mask"),
        ([png(source())], png(source())),  # a mask needs an alpha channel
        ([png(source())], png(Image.new("RGBA", (10, 10)))),  # and the image's size
    ],
)
def test_edits_refuse_what_is_not_a_usable_image(images, mask):
    with pytest.raises(UpstreamError) as caught:
        edit_images(ROUTE, "gpt-image-1", ImageRequest(prompt="p", images=images, mask=mask))
    assert (caught.value.status, caught.value.code) == (400, "invalid_param")


# --- videos ---


def test_a_video_job_progresses_with_time_and_downloads_a_real_mp4(sandbox_clock, settings):
    settings.BYTESPIKE_SANDBOX_VIDEO_SECONDS = 10
    request = VideoRequest(prompt="A cat surfing a wave", seconds=4, aspect_ratio="16:9", seed=3)
    job = video_submit(ROUTE, "sora-2", request)
    assert job.id.startswith("video_sb_") and (job.state, job.progress) == ("queued", 0)

    seen = []
    for _ in range(12):
        status = video_status(ROUTE, job.id)
        seen.append((status.state, status.progress))
        sandbox_clock.advance(0.95)
    states = [state for state, _ in seen]
    assert states[0] == "queued" and states[-1] == "completed" and "in_progress" in states
    assert states.index("completed") > states.index("in_progress") > 0
    progress = [value for _, value in seen]
    assert progress == sorted(progress) and progress[-1] == 100
    assert all(0 < value < 100 for state, value in seen if state == "in_progress")

    file = video_download(ROUTE, job.id)
    assert (file.mime_type, file.width, file.height) == ("video/mp4", 640, 360)
    assert file.duration_seconds == pytest.approx(4, abs=0.2)
    with av.open(io.BytesIO(file.data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.format.name == "yuv420p"
        assert sum(1 for _ in container.decode(stream)) == 4 * render.VIDEO_FPS
    assert file.data[:64].find(b"moov") != -1  # faststart: the index comes first


def test_the_seconds_knob_sets_how_long_a_video_job_runs(sandbox_clock):
    """[sandbox:seconds=0.6]: queued for its first tenth, in progress, completed at 0.6 s."""
    job = video_submit(ROUTE, "sora-2", VideoRequest(prompt="[sandbox:seconds=0.6] x", seconds=1))
    seen = {}
    for eighth in range(8):  # polled every eighth of a second (exact in binary)
        seen[eighth / 8] = video_status(ROUTE, job.id).state
        sandbox_clock.advance(1 / 8)
    assert seen == {
        0: "queued",
        **dict.fromkeys([0.125, 0.25, 0.375, 0.5], "in_progress"),
        **dict.fromkeys([0.625, 0.75, 0.875], "completed"),
    }


def test_portrait_video_is_scaled_down_with_its_real_dimensions(sandbox_clock):
    job = video_submit(
        ROUTE, "sora-2", VideoRequest(prompt="[sandbox:seconds=0] tall", seconds=1, size="720x1280")
    )
    file = video_download(ROUTE, job.id)
    assert (file.width, file.height) == (360, 640)
    assert file.duration_seconds == pytest.approx(1, abs=0.2)


def test_videos_are_deterministic(sandbox_clock):
    request = VideoRequest(prompt="[sandbox:seconds=0] same", seconds=1, size="256x144", seed=5)
    first = video_download(ROUTE, video_submit(ROUTE, "sora-2", request).id).data
    render.render_video.cache_clear()
    render._video_scene.cache_clear()
    sandbox_clock.advance(60)  # a later job of the same request
    second = video_download(ROUTE, video_submit(ROUTE, "sora-2", request).id).data
    assert first == second


def test_the_fail_knob_fails_halfway(sandbox_clock):
    job = video_submit(
        ROUTE, "sora-2", VideoRequest(prompt="[sandbox:fail] [sandbox:seconds=10] x", seconds=4)
    )
    sandbox_clock.advance(4)
    assert video_status(ROUTE, job.id).state == "in_progress"
    sandbox_clock.advance(1.5)
    failed = video_status(ROUTE, job.id)
    assert (failed.state, failed.error_code) == ("failed", "video_generation_failed")
    assert failed.error and 0 < failed.progress < 100
    with pytest.raises(UpstreamError) as caught:
        video_download(ROUTE, job.id)
    assert caught.value.status == 502


def test_failure_rate_fails_jobs(sandbox_clock, settings):
    settings.BYTESPIKE_SANDBOX_FAILURE_RATE = 1
    job = video_submit(ROUTE, "sora-2", VideoRequest(prompt="[sandbox:seconds=1] x", seconds=4))
    sandbox_clock.advance(2)
    assert video_status(ROUTE, job.id).state == "failed"


def test_slow_knob_and_run_time_setting(sandbox_clock, settings):
    settings.BYTESPIKE_SANDBOX_VIDEO_SECONDS = 2
    normal = video_submit(ROUTE, "sora-2", VideoRequest(prompt="x", seconds=4))
    slow = video_submit(ROUTE, "sora-2", VideoRequest(prompt="[sandbox:slow] x", seconds=4))
    sandbox_clock.advance(2.5)
    assert video_status(ROUTE, normal.id).state == "completed"
    assert video_status(ROUTE, slow.id).state == "in_progress"
    sandbox_clock.advance(2)
    assert video_status(ROUTE, slow.id).state == "completed"


@pytest.mark.parametrize(("status", "mapped"), [(503, 502), (429, 429), (400, 400), (401, 502)])
def test_the_status_knob_fails_the_submit(status, mapped):
    with pytest.raises(UpstreamError) as caught:
        video_submit(
            ROUTE, "sora-2", VideoRequest(prompt=f"[sandbox:status={status}] x", seconds=4)
        )
    assert caught.value.status == mapped


def test_content_before_completion_is_refused(sandbox_clock):
    job = video_submit(ROUTE, "sora-2", VideoRequest(prompt="[sandbox:seconds=5] x", seconds=4))
    sandbox_clock.advance(2)
    with pytest.raises(UpstreamError) as caught:
        video_download(ROUTE, job.id)
    assert caught.value.status == 502
    with httpx.Client(transport=SandboxMediaTransport(), base_url=ROUTE.base_url) as client:
        answer = client.get(f"/videos/{job.id}/content")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "video_not_ready"


def test_job_ids_answer_from_a_fresh_transport_in_the_openai_shape(sandbox_clock):
    job = video_submit(
        ROUTE,
        "sora-2-pro",
        VideoRequest(prompt="[sandbox:seconds=1] x", seconds=8, size="1792x1024"),
    )
    sandbox_clock.advance(0.5)
    with httpx.Client(transport=SandboxMediaTransport(), base_url=ROUTE.base_url) as client:
        body = client.get(f"/videos/{job.id}").json()
        assert body["id"] == job.id and body["object"] == "video"
        assert (body["model"], body["seconds"], body["size"]) == ("sora-2-pro", "8", "1792x1024")
        assert body["status"] == "in_progress" and isinstance(body["created_at"], int)
        assert body["error"] is None
        sandbox_clock.advance(1)
        done = client.get(f"/videos/{job.id}").json()
        assert done["status"] == "completed" and done["completed_at"] >= done["created_at"]
        assert client.get("/videos/video_sb_garbage").status_code == 404
        assert client.get("/videos/video_unknown").status_code == 404
    close_clients()
    assert video_status(ROUTE, job.id).state == "completed"


def test_delete_answers_in_the_openai_shape(sandbox_clock):
    job = video_submit(ROUTE, "sora-2", VideoRequest(prompt="x", seconds=4))
    assert video_cancel(ROUTE, job.id) is True
    with httpx.Client(transport=SandboxMediaTransport(), base_url=ROUTE.base_url) as client:
        answer = client.delete(f"/videos/{job.id}").json()
    assert answer == {"id": job.id, "object": "video.deleted", "deleted": True}
    assert video_cancel(ROUTE, "video_sb_unknown") is False


def test_job_ids_stay_short_enough_to_store(sandbox_clock):
    prompt = "一只猫在冲浪,阳光灿烂的海滩上。" * 60
    job = video_submit(ROUTE, "sora-2", VideoRequest(prompt=prompt, seconds=4, seed=2**40))
    assert len(job.id) <= 500
    assert video_status(ROUTE, job.id).state == "queued"


def test_thumbnail_variant(sandbox_clock):
    job = video_submit(
        ROUTE, "sora-2", VideoRequest(prompt="[sandbox:seconds=0] x", seconds=1, size="256x144")
    )
    with httpx.Client(transport=SandboxMediaTransport(), base_url=ROUTE.base_url) as client:
        answer = client.get(f"/videos/{job.id}/content", params={"variant": "thumbnail"})
    assert answer.headers["content-type"] == "image/webp"
    assert opened(answer.content).size == (256, 144)


def test_video_submit_accepts_json_bodies_too(sandbox_clock):
    with httpx.Client(transport=SandboxMediaTransport(), base_url=ROUTE.base_url) as client:
        answer = client.post("/videos", json={"model": "sora-2", "prompt": "x", "seconds": "8"})
    body = answer.json()
    assert answer.status_code == 200 and (body["seconds"], body["size"]) == ("8", "720x1280")
