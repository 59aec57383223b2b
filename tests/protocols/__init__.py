"""Protocol codec tests (pure functions, no database), and the helpers and test data that they
and the data plane's other tests share."""

import base64
import io

from PIL import Image

from generation.protocols.base import SSE

# What the codec tests send: an inline image (bytes that start as a PNG does), and the JSON
# schema of a weather tool, as the providers' own documentation writes it.
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake png").decode()
WEATHER = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location"],
}


def png(width: int = 64, height: int = 64, color=(200, 30, 30, 255)) -> bytes:
    """A real PNG of one colour (RGBA): what the image endpoints are sent."""
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def parse_sse(frames: list[bytes]) -> list[SSE]:
    """Rendered SSE frames back into events, as a client reads them off the wire."""
    events = []
    for block in b"".join(frames).decode().split("\n\n"):
        if not block:
            continue
        event, data = "", []
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
        events.append(SSE(data="\n".join(data), event=event))
    return events


def pieces(text: str, size: int = 3) -> list[str]:
    """``text`` cut into fragments of ``size`` characters, as streams deliver it."""
    return [text[i : i + size] for i in range(0, len(text), size)]
