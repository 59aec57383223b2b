"""What a protocol codec is: the two halves of its interface, and the wire types they use.

A codec module (openai_chat, openai_responses, anthropic, gemini) is both a CallerCodec (the
gateway as a server of that protocol) and an UpstreamCodec (the gateway as a client of a
provider speaking it). The sandbox upstream is built from the caller side of the same codecs,
so each codec's two sides are tested against each other as well as against the protocol's
documented examples. The helpers the codecs share are in common.py.
"""

import json
from dataclasses import dataclass, field
from typing import Protocol

from generation.protocols.internal import ChatRequest, ChatResponse, StreamEvent


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


# --- The interface -----------------------------------------------------------------------------
# Codecs are modules, so these are written as a module's functions and classes (the methods'
# ``self`` stands for the module); a module that has them satisfies the Protocol.


class FrameRenderer(Protocol):
    """Internal stream events to the caller's SSE frames, exactly as the protocol's own server
    streams them."""

    def feed(self, event: StreamEvent) -> list[bytes]: ...

    def finish(self) -> list[bytes]:
        """The stream's last frames, ending the message cleanly if no MessageEnd did."""

    def fail(self, message: str) -> list[bytes]:
        """The protocol's error event, for a stream that cannot go on."""


class EventParser(Protocol):
    """An upstream's SSE events to internal stream events (UpstreamFormatError if they do not
    parse, or carry the upstream's error)."""

    def feed(self, event: SSE) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]:
        """The upstream closed the stream: what its end still means."""


class CallerCodec(Protocol):
    """The gateway as a server of the protocol: what a caller sends and receives."""

    def parse_request(self, body: dict, *, model: str | None = None) -> ChatRequest:
        """Validate and translate a caller's JSON body. ``model`` comes from the URL when the
        protocol puts it there (Gemini). Raises ProtocolError naming the bad field."""

    def render_response(self, response: ChatResponse, request: ChatRequest) -> dict: ...

    # A class in the codec module: calling it makes one stream's renderer.
    def StreamRenderer(
        self, request: ChatRequest, response_id: str, created: int
    ) -> FrameRenderer: ...


class UpstreamCodec(Protocol):
    """The gateway as a client of a provider that speaks the protocol."""

    def upstream_request(self, request: ChatRequest, upstream_model: str) -> UpstreamCall: ...

    def parse_response(self, body: dict) -> ChatResponse:
        """A whole upstream answer; UpstreamFormatError if it is not one."""

    # A class in the codec module: calling it makes one stream's parser.
    def StreamParser(self) -> EventParser: ...
