"""The internal form every protocol translates to and from.

A request, a complete response and a stream of events, shaped after what the four protocols
have in common. Token usage is normalised here (SPEC §5): ``input_tokens`` never includes cached
tokens, and ``output_tokens`` includes reasoning ("thoughts") tokens.
"""

from dataclasses import dataclass, field
from typing import Literal

# --- Content -----------------------------------------------------------------------------------


@dataclass
class TextPart:
    text: str


@dataclass
class ImagePart:
    """An input image: inline base64 ``data`` with its ``media_type``, or a ``url``."""

    media_type: str = ""
    data: str = ""  # base64, without a data: prefix
    url: str = ""


@dataclass
class ToolCall:
    """The model asks for a tool; ``arguments`` is a JSON object serialised as text."""

    id: str
    name: str
    arguments: str = "{}"


@dataclass
class ToolResult:
    """The caller's answer to a tool call. ``name`` is the called tool's name when known
    (Gemini needs it; codecs look it up from the call in the history)."""

    tool_call_id: str
    content: list["TextPart | ImagePart"] = field(default_factory=list)
    name: str = ""
    is_error: bool = False


Part = TextPart | ImagePart | ToolCall | ToolResult


@dataclass
class Message:
    """``user`` messages carry text, images and tool results; ``assistant`` messages carry
    text and tool calls."""

    role: Literal["user", "assistant"]
    parts: list[Part] = field(default_factory=list)


@dataclass
class Tool:
    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})


# None (the protocol's default), "auto", "none", "required" (some tool), or "tool" (the one
# named in ChatRequest.tool_choice_name).
ToolChoice = Literal["auto", "none", "required", "tool"] | None


@dataclass
class ChatRequest:
    model: str
    messages: list[Message]
    system: str = ""
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = None
    tool_choice_name: str = ""  # with tool_choice == "tool"
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    # OpenAI chat: the caller asked for the final usage chunk (stream_options.include_usage).
    stream_usage: bool = False
    user: str = ""


# --- Results -----------------------------------------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "content_filter"]


@dataclass
class Usage:
    input_tokens: int = 0  # not cached
    output_tokens: int = 0  # reasoning included
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_input(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass
class ChatResponse:
    id: str
    model: str
    content: list[TextPart | ToolCall] = field(default_factory=list)
    stop_reason: StopReason = "end_turn"
    stop_sequence: str = ""
    usage: Usage = field(default_factory=Usage)

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


# --- Stream events -----------------------------------------------------------------------------
# A stream is: MessageStart, then blocks (TextStart/ToolCallStart, deltas, BlockStop) in order,
# then MessageEnd. Blocks are numbered from 0 in the order they start; one block is open at a
# time in what upstreams send, except OpenAI chat, whose codec closes blocks as needed.


@dataclass
class MessageStart:
    id: str
    model: str
    usage: Usage = field(default_factory=Usage)  # input tokens, when the upstream says early


@dataclass
class TextStart:
    index: int


@dataclass
class TextDelta:
    index: int
    text: str


@dataclass
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass
class ToolCallDelta:
    index: int
    arguments: str  # a fragment of the JSON text


@dataclass
class BlockStop:
    index: int


@dataclass
class MessageEnd:
    stop_reason: StopReason = "end_turn"
    stop_sequence: str = ""
    usage: Usage = field(default_factory=Usage)


StreamEvent = (
    MessageStart | TextStart | TextDelta | ToolCallStart | ToolCallDelta | BlockStop | MessageEnd
)
