"""What the built-in sandbox draws for its media answers (sandbox_media.py): images, edits and
video frames with Pillow, H.264 MP4 videos with PyAV. Pure functions of the prompt, seed, index
and size, so a request answers the same every time, in any process; no HTTP, no clock, no
settings.

    render_image   a composition whose colours and shapes come from the prompt, captioned with it
    edit_image     the uploaded image recoloured towards the prompt, only where the mask lets
    render_video   a moving background, a bouncing ball, the prompt and a clock, as an MP4
"""

import colorsys
import hashlib
import io
import math
import os
import random
import tempfile
import textwrap
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

VIDEO_FPS = 12
VIDEO_LONG_SIDE = 640


# --- images ------------------------------------------------------------------------------------


def _digest(*parts) -> bytes:
    return hashlib.sha256("\x00".join(str(part) for part in parts).encode()).digest()


def _colour(byte_hue: int, byte_other: int, saturation: float, value: float) -> tuple:
    hue = byte_hue / 255
    sat = saturation + (byte_other % 32) / 255
    red, green, blue = colorsys.hsv_to_rgb(hue, min(sat, 1.0), value)
    return (round(red * 255), round(green * 255), round(blue * 255))


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _draw_caption(image: Image.Image, text: str, *, top: bool = False) -> None:
    """The prompt, wrapped, in white on a translucent band across the image."""
    width, height = image.size
    size = max(10, min(width, height) // 16)
    font = _font(size)
    line_height = round(size * 1.25)
    average = font.getlength("The quick brown fox jumps over the lazy dog") / 43
    per_line = max(8, int(width * 0.9 / max(average, 1)))
    max_lines = max(1, int(height * 0.6 / line_height))
    lines = textwrap.wrap(text, per_line) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(per_line - 1, 1)].rstrip() + "…"
    band = line_height * len(lines) + size
    y0 = size // 2 if top else height - band - size // 2
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((0, y0, width, y0 + band), fill=(0, 0, 0, 120))
    for number, line in enumerate(lines):
        draw.text(
            (width * 0.05, y0 + size // 2 + number * line_height),
            line,
            font=font,
            fill=(255, 255, 255, 255),
        )
    if image.mode == "RGBA":
        image.alpha_composite(overlay)
    else:
        image.paste(overlay, (0, 0), overlay)


def _gradient(digest: bytes, width: int, height: int) -> Image.Image:
    """A diagonal greyscale ramp whose direction comes from the digest."""
    vertical = Image.linear_gradient("L")
    horizontal = vertical.transpose(Image.Transpose.ROTATE_90)
    ramp = Image.blend(vertical, horizontal, 0.5)
    if digest[9] & 1:
        ramp = ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if digest[9] & 2:
        ramp = ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return ramp.resize((width, height), Image.Resampling.BILINEAR)


def render_image(prompt: str, seed: int | None, index: int, width: int, height: int) -> Image.Image:
    """A composition whose colours and shapes come from (prompt, seed, index), captioned with
    the prompt: RGB, exactly width x height."""
    digest = _digest("image", prompt, seed, index)
    dark = _colour(digest[0], digest[1], 0.55, 0.35)
    light = _colour(digest[2], digest[3], 0.35, 0.95)
    mid = _colour(digest[4], digest[5], 0.6, 0.7)
    image = ImageOps.colorize(_gradient(digest, width, height), dark, light, mid).convert("RGBA")
    shapes = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(shapes)
    rng = random.Random(digest)
    for _ in range(3 + digest[6] % 4):
        cx, cy = rng.random() * width, rng.random() * height
        radius = (0.08 + rng.random() * 0.25) * min(width, height)
        fill = (*_colour(rng.randrange(256), rng.randrange(256), 0.5, 0.9), 150)
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=fill)
        else:
            draw.rounded_rectangle(box, radius=radius / 4, fill=fill)
    image.alpha_composite(shapes)
    _draw_caption(image, prompt)
    return image.convert("RGB")


def edit_image(
    base: Image.Image,
    others: list[Image.Image],
    mask: Image.Image | None,
    prompt: str,
    seed: int | None,
    index: int,
) -> Image.Image:
    """The base image recoloured towards the prompt's tint, the other images as thumbnails and
    the prompt as a caption; where the mask is opaque the original pixels stay (OpenAI's mask
    convention: transparent areas are the ones to edit). RGBA, the base's size."""
    original = base.convert("RGBA")
    digest = _digest("edit", prompt, seed, index)
    tint_dark = _colour(digest[0], digest[1], 0.6, 0.25)
    tint_light = _colour(digest[0], digest[2], 0.25, 1.0)
    edited = ImageOps.colorize(ImageOps.grayscale(original), tint_dark, tint_light).convert("RGBA")
    edited.putalpha(original.getchannel("A"))
    width, height = edited.size
    thumb_side = max(16, min(width, height) // 5)
    for number, other in enumerate(others[:4]):
        thumb = ImageOps.fit(other.convert("RGBA"), (thumb_side, thumb_side))
        edited.alpha_composite(thumb, (8 + number * (thumb_side + 8), 8))
    _draw_caption(edited, prompt)
    if mask is None:
        return edited
    keep = mask.convert("RGBA").getchannel("A")
    return Image.composite(original, edited, keep)


def encode_image(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=90)
    elif fmt == "WEBP":
        image.save(buffer, "WEBP", quality=90, method=0)
    else:
        image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


# --- videos ------------------------------------------------------------------------------------


def video_dimensions(width: int, height: int) -> tuple[int, int]:
    """The rendered size: the asked aspect ratio, at most VIDEO_LONG_SIDE on the long side,
    even sides (H.264 in yuv420p needs them)."""
    scale = min(1.0, VIDEO_LONG_SIDE / max(width, height))
    return max(16, round(width * scale / 2) * 2), max(16, round(height * scale / 2) * 2)


@lru_cache(maxsize=8)
def _video_scene(prompt: str, seed: int | None, width: int, height: int):
    digest = _digest("video", prompt, seed)
    dark = _colour(digest[0], digest[1], 0.6, 0.3)
    light = _colour(digest[2], digest[3], 0.35, 0.95)
    mid = _colour(digest[4], digest[5], 0.6, 0.7)
    ramp = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90)
    # Twice as wide as the frame, mirrored so the scroll has no seam.
    half = ImageOps.colorize(ramp.resize((width, height)), dark, light, mid)
    background = Image.new("RGB", (width * 2, height))
    background.paste(half, (0, 0))
    background.paste(half.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (width, 0))
    caption = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    _draw_caption(caption, prompt, top=True)
    ball = _colour(digest[6], digest[7], 0.6, 1.0)
    return background, caption, ball


def video_frame(prompt: str, seed, seconds: int, width: int, height: int, number: int):
    background, caption, ball = _video_scene(prompt, seed, width, height)
    total = max(seconds * VIDEO_FPS, 1)
    offset = int(number * width / total) % width
    frame = background.crop((offset, 0, offset + width, height))
    draw = ImageDraw.Draw(frame)
    angle = 2 * math.pi * number / total
    radius = min(width, height) / 10
    cx = width / 2 + math.cos(angle) * width / 3
    cy = height * 0.6 + math.sin(2 * angle) * height / 6
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=ball)
    frame.paste(caption, (0, 0), caption)
    clock = f"{number / VIDEO_FPS:4.1f}s / {seconds}s"
    size = max(10, min(width, height) // 20)
    draw.text((width - size * 7, height - size * 2), clock, font=_font(size), fill=(255, 255, 255))
    return frame


@lru_cache(maxsize=4)
def render_video(prompt: str, seed: int | None, seconds: int, width: int, height: int) -> bytes:
    """A `seconds`-long H.264 MP4 (yuv420p, VIDEO_FPS, moov first) of the prompt over a moving
    background with a bouncing ball and a clock. Deterministic."""
    import av

    with tempfile.TemporaryDirectory(prefix="bytespike-sandbox-") as folder:
        path = os.path.join(folder, "video.mp4")
        # faststart rewrites the file at the end, so it needs a real file, not a buffer.
        with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream(
                "libx264", rate=VIDEO_FPS, options={"preset": "ultrafast", "crf": "30"}
            )
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for number in range(seconds * VIDEO_FPS):
                frame = av.VideoFrame.from_image(
                    video_frame(prompt, seed, seconds, width, height, number)
                )
                frame.pts = number
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        with open(path, "rb") as file:
            return file.read()
