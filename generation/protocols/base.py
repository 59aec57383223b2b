"""What every protocol codec provides, and the helpers they share.

A codec module (openai_chat, openai_responses, anthropic, gemini) has:

Caller side (the gateway as a server of that protocol):
    parse_request(body: dict, *, model: str | None = None) -> ChatRequest
        Validate and translate a caller's JSON body. ``model`` comes from the URL when the
        protocol puts it there (Gemini). Raises ProtocolError naming the bad field.
    render_response(response: ChatResponse, request: ChatRequest) -> dict
    StreamRenderer(request, response_id, created) with .feed(event) -> list[bytes],
        .finish() -> list[bytes] and .fail(message) -> list[bytes]: internal events to SSE
        frames, exactly as the protocol's own server streams them.

Upstream side (the gateway as a client of a provider speaking that protocol):
    upstream_request(request: ChatRequest, upstream_model: str) -> UpstreamCall
    parse_response(body: dict) -> ChatResponse            (raises UpstreamFormatError)
    StreamParser() with .feed(event: SSE) -> list[StreamEvent] and .close() -> list[StreamEvent]

The sandbox upstream is built from the caller side of the same codecs, so each codec's two
sides are tested against each other as well as against the protocol's documented examples.
"""

import base64
import binascii
import json
from dataclasses import dataclass, field


class ProtocolError(ValueError):
    """A caller's request that the protocol does not allow; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class UpstreamFormatError(ValueError):
    """An upstream answer that does not parse as its protocol."""


@dataclass
class UpstreamCall:
    """A request to send upstream: path under the channel's base URL, JSON body, streaming."""

    path: str
    body: dict
    stream: bool = False
    params: dict = field(default_factory=dict)


@dataclass
class SSE:
    """One server-sent event as parsed off the wire."""

    data: str
    event: str = ""

    def json(self):
        return json.loads(self.data)


def sse_frame(data, event: str | None = None) -> bytes:
    """Encode one SSE frame; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def require(body: dict, name: str, kind, message: str | None = None):
    """``body[name]`` if present and of ``kind``, else ProtocolError."""
    if name not in body or body[name] is None:
        raise ProtocolError(message or f"Missing required parameter: '{name}'.", name)
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"Invalid type for '{name}'.", name)
    return value


def optional(body: dict, name: str, kind, *, minimum=None, maximum=None):
    """``body[name]`` if present (type- and range-checked), else None."""
    value = body.get(name)
    if value is None:
        return None
    numeric = kind in (int, float)
    allowed = (int, float) if kind is float else kind
    if not isinstance(value, allowed) or (numeric and isinstance(value, bool)):
        raise ProtocolError(f"Invalid type for '{name}'.", name)
    if minimum is not None and value < minimum:
        raise ProtocolError(f"'{name}' must be at least {minimum}.", name)
    if maximum is not None and value > maximum:
        raise ProtocolError(f"'{name}' must be at most {maximum}.", name)
    return value


def image_from_data_url(url: str, param: str):
    """An ImagePart from a ``data:<type>;base64,<data>`` URL or an http(s) URL."""
    from generation.protocols.internal import ImagePart

    if url.startswith(("https://", "http://")):
        return ImagePart(url=url)
    if not url.startswith("data:") or ";base64," not in url:
        raise ProtocolError("Images must be an http(s) URL or a base64 data URL.", param)
    media_type, data = url[5:].split(";base64,", 1)
    return image_from_base64(media_type, data, param)


def image_from_base64(media_type: str, data: str, param: str):
    """An ImagePart from base64 text, refusing what is not valid base64 or not an image type."""
    from generation.protocols.internal import ImagePart

    if not media_type.startswith("image/"):
        raise ProtocolError(f"Unsupported image type {media_type!r}.", param)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("The image data is not valid base64.", param) from None
    return ImagePart(media_type=media_type, data=data)
