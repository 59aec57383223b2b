"""Anthropic Messages (``POST /v1/messages``): the codec for both sides of the gateway.

Caller side: a Messages request becomes a ChatRequest; a ChatResponse or a stream of internal
events becomes a Message or the ``message_start`` ... ``message_stop`` SSE sequence.
Upstream side: a ChatRequest becomes a Messages request; a Message or its SSE stream becomes
the internal form.

Decisions worth knowing:

- Validation errors read like Anthropic's own (``messages.1.content.0.type: ...``) and carry
  the bracketed path as ``param`` (``messages[1].content[0].type``).
- ``thinking``, ``top_k`` and ``tool_choice.disable_parallel_tool_use`` are accepted and not
  forwarded; thinking blocks in the history and in upstream answers are dropped (the internal
  form has no place for them). Server tools (web search, computer use, ...) are refused.
- Usage (SPEC §5): Anthropic ``input_tokens`` excludes cache tokens, so it maps one to one.
- Rendered ids are ``msg_<response id>``; tool call ids that are not already ``toolu_`` ids
  become ``toolu_<response id>_<n>``, so the caller sees ids of the protocol's own shape and
  the same ids come back in its next request's history.
- An ``error`` event in an upstream stream raises UpstreamFormatError with the upstream's type
  and message, so the gateway reports it as an upstream failure rather than a normal end.
"""

import json
import re

from generation.protocols.base import (
    SSE,
    ProtocolError,
    UpstreamCall,
    UpstreamFormatError,
    sse_frame,
)
from generation.protocols.common import (
    MAX_TOKENS_LIMIT,
    Fields,
    arguments_object,
    image_from_base64,
    join_param,
)
from generation.protocols.internal import (
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    MessageEnd,
    MessageStart,
    StreamEvent,
    TextDelta,
    TextPart,
    TextStart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolResult,
    Usage,
)

PATH = "/v1/messages"
# Callers of other protocols may leave max_tokens out; Anthropic requires it. 4096 is within
# the output limit of every Claude model.
DEFAULT_MAX_TOKENS = 4096
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

_STOP_FROM_ANTHROPIC = {
    "end_turn": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "refusal": "content_filter",
    "pause_turn": "end_turn",
    "model_context_window_exceeded": "max_tokens",
}
_STOP_TO_ANTHROPIC = {
    "end_turn": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "content_filter": "refusal",
}
_TOOL_CHOICE_FROM_ANTHROPIC = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
_TOOL_CHOICE_TO_ANTHROPIC = {"auto": "auto", "required": "any", "tool": "tool", "none": "none"}

_TYPE_NAMES = {
    str: "a valid string",
    int: "a valid integer",
    float: "a valid number",
    bool: "a valid boolean",
    list: "a valid list",
    dict: "a valid dictionary",
}
_USER_BLOCKS = ("text", "image", "tool_result")
_ASSISTANT_BLOCKS = ("text", "tool_use", "thinking", "redacted_thinking")
# Real Anthropic block types the internal form cannot carry: refused with a clear message
# rather than as unknown.
_UNSUPPORTED_BLOCKS = (
    "document",
    "search_result",
    "server_tool_use",
    "web_search_tool_result",
    "container_upload",
)


# --- Validation helpers ------------------------------------------------------------------------


def _error(param: str, text: str) -> ProtocolError:
    """A ProtocolError worded like Anthropic's (dotted path first), bracketed path as param."""
    dotted = re.sub(r"\[(\d+)\]", r".\1", param)
    return ProtocolError(f"{dotted}: {text}", param)


class _Fields(Fields):
    """Anthropic's wording: ``messages.0.role: Field required``."""

    def missing(self, param: str, key: str) -> ProtocolError:
        return _error(param, "Field required")

    def wrong_type(self, param: str, kind: type, value) -> ProtocolError:
        return _error(param, f"Input should be {_TYPE_NAMES[kind]}")

    def out_of_range(self, param: str, key: str, value, minimum, maximum) -> ProtocolError:
        if minimum is not None and value < minimum:
            return _error(param, f"Input should be greater than or equal to {minimum}")
        return _error(param, f"Input should be less than or equal to {maximum}")


_FIELDS = _Fields()


def _check(value, kind, param: str):
    return _FIELDS.check(value, kind, param)


def _required(obj: dict, key: str, kind, prefix: str = ""):
    return _FIELDS.read(obj, key, kind, join_param(prefix, key), required=True)


def _optional(obj: dict, key: str, kind, prefix: str = "", *, minimum=None, maximum=None):
    param = join_param(prefix, key)
    return _FIELDS.read(obj, key, kind, param, minimum=minimum, maximum=maximum)


def _object(value, param: str) -> dict:
    return _check(value, dict, param)


# --- Caller side: request ----------------------------------------------------------------------


def parse_request(body: dict, *, model: str | None = None) -> ChatRequest:
    """Validate a Messages request and translate it; ``model`` is a fallback for a body
    without one (the Messages API always carries it in the body)."""
    if not isinstance(body, dict):
        raise ProtocolError("Request body must be a JSON object.", None)
    if body.get("model") is None and model:
        body = {**body, "model": model}
    request_model = _required(body, "model", str)
    if not request_model.strip():
        raise _error("model", "String should have at least 1 character")
    max_tokens = _required(body, "max_tokens", int)
    if max_tokens < 0:  # 0 is allowed: it pre-warms the prompt cache without an answer
        raise _error("max_tokens", "Input should be greater than or equal to 0")
    if max_tokens > MAX_TOKENS_LIMIT:
        raise _error(
            "max_tokens",
            f"{max_tokens} > {MAX_TOKENS_LIMIT}, which is the maximum allowed number of "
            "output tokens",
        )
    temperature = _optional(body, "temperature", float, minimum=0, maximum=1)
    top_p = _optional(body, "top_p", float, minimum=0, maximum=1)
    _optional(body, "top_k", int, minimum=0)  # accepted, not forwarded
    stream = _optional(body, "stream", bool) or False
    stop = _string_list(body, "stop_sequences")
    user = ""
    metadata = _optional(body, "metadata", dict)
    if metadata:
        user = _optional(metadata, "user_id", str, "metadata") or ""
    if body.get("thinking") is not None:
        _object(body["thinking"], "thinking")  # accepted, not forwarded

    tools = _parse_tools(body)
    tool_choice, tool_choice_name = _parse_tool_choice(body)
    return ChatRequest(
        model=request_model,
        messages=_parse_messages(body),
        system=_parse_system(body.get("system")),
        tools=tools,
        tool_choice=tool_choice,
        tool_choice_name=tool_choice_name,
        max_tokens=max_tokens,
        temperature=float(temperature) if temperature is not None else None,
        top_p=float(top_p) if top_p is not None else None,
        stop=stop,
        stream=stream,
        user=user,
    )


def _string_list(body: dict, key: str) -> list[str]:
    values = _optional(body, key, list)
    if values is None:
        return []
    return [_check(value, str, f"{key}[{i}]") for i, value in enumerate(values)]


def _parse_system(system) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    _check(system, list, "system")
    texts = []
    for i, block in enumerate(system):
        param = f"system[{i}]"
        _object(block, param)
        kind = _required(block, "type", str, param)
        if kind != "text":
            raise _error(f"{param}.type", f"Input tag '{kind}' does not match the expected 'text'")
        texts.append(_required(block, "text", str, param))
    return "\n\n".join(text for text in texts if text)


def _parse_messages(body: dict) -> list[Message]:
    raw = _required(body, "messages", list)
    if not raw:
        raise _error("messages", "at least one message is required")
    messages: list[Message] = []
    tool_names: dict[str, str] = {}  # tool_use id -> name, for ToolResult.name
    for i, item in enumerate(raw):
        param = f"messages[{i}]"
        _object(item, param)
        role = _required(item, "role", str, param)
        if role not in ("user", "assistant"):
            raise _error(f"{param}.role", "Input should be 'user' or 'assistant'")
        content = item.get("content")
        if content is None:
            raise _error(f"{param}.content", "Field required")
        if isinstance(content, str):
            parts = [TextPart(content)] if content else []
        else:
            _check(content, list, f"{param}.content")
            parts = []
            for j, block in enumerate(content):
                part = _parse_block(block, role, f"{param}.content[{j}]", tool_names)
                if part is not None:
                    parts.append(part)
        messages.append(Message(role=role, parts=parts))
    return messages


def _parse_block(block, role: str, param: str, tool_names: dict[str, str]):
    _object(block, param)
    kind = _required(block, "type", str, param)
    allowed = _USER_BLOCKS if role == "user" else _ASSISTANT_BLOCKS
    if kind in _UNSUPPORTED_BLOCKS:
        raise _error(f"{param}.type", f"'{kind}' content blocks are not supported by this gateway")
    if kind not in allowed:
        if kind in _USER_BLOCKS or kind in _ASSISTANT_BLOCKS:
            raise _error(f"{param}.type", f"'{kind}' blocks are not allowed in {role} messages")
        expected = ", ".join(f"'{name}'" for name in allowed)
        raise _error(
            f"{param}.type",
            f"Input tag '{kind}' found using 'type' does not match any of the expected tags: "
            f"{expected}",
        )
    if kind == "text":
        text = _required(block, "text", str, param)
        return TextPart(text) if text else None
    if kind == "image":
        return _parse_image(block, param)
    if kind == "tool_use":
        call_id = _required(block, "id", str, param)
        name = _required(block, "name", str, param)
        arguments = _required(block, "input", dict, param)
        tool_names[call_id] = name
        return ToolCall(id=call_id, name=name, arguments=json.dumps(arguments))
    if kind == "tool_result":
        call_id = _required(block, "tool_use_id", str, param)
        is_error = _optional(block, "is_error", bool, param) or False
        return ToolResult(
            tool_call_id=call_id,
            content=_parse_tool_result_content(block.get("content"), f"{param}.content"),
            name=tool_names.get(call_id, ""),
            is_error=is_error,
        )
    return None  # thinking, redacted_thinking: accepted and dropped


def _parse_image(block: dict, param: str) -> ImagePart:
    source = _required(block, "source", dict, param)
    param = f"{param}.source"
    kind = _required(source, "type", str, param)
    if kind == "base64":
        media_type = _required(source, "media_type", str, param)
        if media_type not in IMAGE_TYPES:
            expected = ", ".join(f"'{name}'" for name in IMAGE_TYPES)
            raise _error(f"{param}.media_type", f"Input should be {expected}")
        data = _required(source, "data", str, param)
        try:
            return image_from_base64(media_type, data, f"{param}.data")
        except ProtocolError as error:
            raise _error(f"{param}.data", error.message) from None
    if kind == "url":
        url = _required(source, "url", str, param)
        if not url.startswith(("https://", "http://")):
            raise _error(f"{param}.url", "Only http(s) image URLs are supported")
        return ImagePart(url=url)
    if kind == "file":
        raise _error(f"{param}.type", "File sources are not supported by this gateway")
    raise _error(
        f"{param}.type",
        f"Input tag '{kind}' found using 'type' does not match any of the expected tags: "
        "'base64', 'url'",
    )


def _parse_tool_result_content(content, param: str) -> list[TextPart | ImagePart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    _check(content, list, param)
    parts: list[TextPart | ImagePart] = []
    for i, block in enumerate(content):
        block_param = f"{param}[{i}]"
        _object(block, block_param)
        kind = _required(block, "type", str, block_param)
        if kind == "text":
            text = _required(block, "text", str, block_param)
            if text:
                parts.append(TextPart(text))
        elif kind == "image":
            parts.append(_parse_image(block, block_param))
        else:
            raise _error(
                f"{block_param}.type",
                f"Input tag '{kind}' found using 'type' does not match any of the expected "
                "tags: 'text', 'image'",
            )
    return parts


def _parse_tools(body: dict) -> list[Tool]:
    raw = _optional(body, "tools", list)
    if not raw:
        return []
    tools = []
    for i, item in enumerate(raw):
        param = f"tools[{i}]"
        _object(item, param)
        kind = _optional(item, "type", str, param)
        if kind not in (None, "custom"):
            raise _error(f"{param}.type", f"Unknown tool type '{kind}'")
        name = _required(item, "name", str, param)
        if not name:
            raise _error(f"{param}.name", "String should have at least 1 character")
        description = _optional(item, "description", str, param) or ""
        schema = _required(item, "input_schema", dict, param)
        tools.append(Tool(name=name, description=description, parameters=schema))
    return tools


def _parse_tool_choice(body: dict) -> tuple:
    choice = _optional(body, "tool_choice", dict)
    if choice is None:
        return None, ""
    kind = _required(choice, "type", str, "tool_choice")
    if kind not in _TOOL_CHOICE_FROM_ANTHROPIC:
        raise _error(
            "tool_choice.type",
            f"Input tag '{kind}' found using 'type' does not match any of the expected tags: "
            "'auto', 'any', 'tool', 'none'",
        )
    _optional(choice, "disable_parallel_tool_use", bool, "tool_choice")
    name = _required(choice, "name", str, "tool_choice") if kind == "tool" else ""
    return _TOOL_CHOICE_FROM_ANTHROPIC[kind], name


# --- Caller side: response ---------------------------------------------------------------------


def _message_id(response_id: str) -> str:
    return response_id if response_id.startswith("msg_") else f"msg_{response_id}"


def _tool_use_id(call_id: str, message_id: str, n: int) -> str:
    if call_id.startswith("toolu_"):
        return call_id
    return f"toolu_{message_id.removeprefix('msg_')}_{n}"


def _usage(usage: Usage) -> dict:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }


def _stop_reason_for_caller(stop_reason: str, called_tools: bool) -> str:
    # Callers loop on "tool_use"; some upstreams end a tool turn with a plain stop.
    if called_tools and stop_reason == "end_turn":
        return "tool_use"
    return _STOP_TO_ANTHROPIC[stop_reason]


def render_response(response: ChatResponse, request: ChatRequest) -> dict:
    message_id = _message_id(response.id)
    content = []
    calls = 0
    for part in response.content:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        else:
            content.append(
                {
                    "type": "tool_use",
                    "id": _tool_use_id(part.id, message_id, calls),
                    "name": part.name,
                    "input": arguments_object(part.arguments),
                }
            )
            calls += 1
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": request.model or response.model,
        "content": content,
        "stop_reason": _stop_reason_for_caller(response.stop_reason, calls > 0),
        "stop_sequence": (response.stop_sequence or None)
        if response.stop_reason == "stop_sequence"
        else None,
        "usage": _usage(response.usage),
    }


class StreamRenderer:
    """Internal events to Anthropic's SSE: message_start, ping, then per block
    content_block_start / content_block_delta... / content_block_stop, then message_delta and
    message_stop. Blocks are renumbered from 0 and closed before the next one opens."""

    def __init__(self, request: ChatRequest, response_id: str, created: int = 0):
        self.model = request.model
        self.message_id = _message_id(response_id)
        self.started = False
        self.done = False
        self.start_usage = Usage()
        self.indices: dict[int, int] = {}  # internal block index -> rendered index
        self.kinds: dict[int, str] = {}  # internal block index -> "text" | "tool_use"
        self.open: int | None = None  # internal index of the open block
        self.next_index = 0
        self.calls = 0

    def feed(self, event: StreamEvent) -> list[bytes]:
        if self.done:
            return []
        frames: list[bytes] = []
        if isinstance(event, MessageStart):
            self.start_usage = event.usage
            return self._start()
        frames += self._start()
        if isinstance(event, TextStart):
            frames += self._open(event.index, {"type": "text", "text": ""}, "text")
        elif isinstance(event, ToolCallStart):
            block = {
                "type": "tool_use",
                "id": _tool_use_id(event.id, self.message_id, self.calls),
                "name": event.name,
                "input": {},
            }
            self.calls += 1
            frames += self._open(event.index, block, "tool_use")
        elif isinstance(event, TextDelta):
            if event.index not in self.indices:
                frames += self._open(event.index, {"type": "text", "text": ""}, "text")
            if event.text and self.open == event.index and self.kinds[event.index] == "text":
                frames.append(self._delta(event.index, {"type": "text_delta", "text": event.text}))
        elif isinstance(event, ToolCallDelta):
            is_open = self.open == event.index and self.kinds[event.index] == "tool_use"
            if event.arguments and is_open:
                delta = {"type": "input_json_delta", "partial_json": event.arguments}
                frames.append(self._delta(event.index, delta))
        elif isinstance(event, BlockStop):
            if self.open == event.index:
                frames += self._close()
        elif isinstance(event, MessageEnd):
            frames += self._end(event)
        return frames

    def finish(self) -> list[bytes]:
        """End a stream whose upstream stopped without a MessageEnd: close it cleanly."""
        if self.done:
            return []
        return self._start() + self._end(MessageEnd())

    def fail(self, message: str) -> list[bytes]:
        self.done = True
        error = {"type": "error", "error": {"type": "api_error", "message": message}}
        return [sse_frame(error, "error")]

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        usage = _usage(self.start_usage)
        message = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [
            sse_frame({"type": "message_start", "message": message}, "message_start"),
            sse_frame({"type": "ping"}, "ping"),
        ]

    def _open(self, index: int, block: dict, kind: str) -> list[bytes]:
        if index in self.indices:
            return []  # a block starts once
        frames = self._close()
        self.indices[index] = self.next_index
        self.kinds[index] = kind
        self.open = index
        self.next_index += 1
        event = {"type": "content_block_start", "index": self.indices[index]}
        frames.append(sse_frame({**event, "content_block": block}, "content_block_start"))
        return frames

    def _delta(self, index: int, delta: dict) -> bytes:
        event = {"type": "content_block_delta", "index": self.indices[index], "delta": delta}
        return sse_frame(event, "content_block_delta")

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        event = {"type": "content_block_stop", "index": self.indices[self.open]}
        self.open = None
        return [sse_frame(event, "content_block_stop")]

    def _end(self, event: MessageEnd) -> list[bytes]:
        frames = self._close()
        self.done = True
        usage = event.usage
        if not usage.total_input and self.start_usage.total_input:
            usage = Usage(
                input_tokens=self.start_usage.input_tokens,
                cache_read_tokens=self.start_usage.cache_read_tokens,
                cache_write_tokens=self.start_usage.cache_write_tokens,
                output_tokens=usage.output_tokens,
                reasoning_tokens=usage.reasoning_tokens,
            )
        stop_sequence = event.stop_sequence if event.stop_reason == "stop_sequence" else ""
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": _stop_reason_for_caller(event.stop_reason, self.calls > 0),
                "stop_sequence": stop_sequence or None,
            },
            "usage": _usage(usage),
        }
        frames.append(sse_frame(delta, "message_delta"))
        frames.append(sse_frame({"type": "message_stop"}, "message_stop"))
        return frames


# --- Upstream side -----------------------------------------------------------------------------


def _safe_id(call_id: str) -> str:
    """Anthropic accepts tool_use ids matching ^[a-zA-Z0-9_-]+$; other protocols' ids may not."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", call_id) or "toolu_0"


def _image_block(part: ImagePart) -> dict:
    if part.url:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    source = {"type": "base64", "media_type": part.media_type, "data": part.data}
    return {"type": "image", "source": source}


def _content_blocks(message: Message) -> list[dict]:
    blocks = []
    for part in message.parts:
        if isinstance(part, TextPart):
            if part.text:  # Anthropic refuses empty text blocks
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part))
        elif isinstance(part, ToolCall):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": _safe_id(part.id),
                    "name": part.name,
                    "input": arguments_object(part.arguments),
                }
            )
        else:
            blocks.append(_tool_result_block(part))
    return blocks


def _tool_result_block(part: ToolResult) -> dict:
    block: dict = {"type": "tool_result", "tool_use_id": _safe_id(part.tool_call_id)}
    items = [item for item in part.content if isinstance(item, ImagePart) or item.text]
    if len(items) == 1 and isinstance(items[0], TextPart):
        block["content"] = items[0].text
    elif items:
        block["content"] = [_result_item(item) for item in items]
    if part.is_error:
        block["is_error"] = True
    return block


def _result_item(item: TextPart | ImagePart) -> dict:
    if isinstance(item, ImagePart):
        return _image_block(item)
    return {"type": "text", "text": item.text}


def _messages(messages: list[Message]) -> list[dict]:
    """Consecutive messages of one role are merged (Anthropic would merge them anyway), and in
    a user turn tool results go first, as Anthropic requires."""
    rendered: list[dict] = []
    for message in messages:
        blocks = _content_blocks(message)
        if not blocks:
            continue
        if rendered and rendered[-1]["role"] == message.role:
            rendered[-1]["content"] += blocks
        else:
            rendered.append({"role": message.role, "content": blocks})
    for message in rendered:
        if message["role"] == "user":
            message["content"].sort(key=lambda block: block["type"] != "tool_result")
    return rendered


def upstream_request(request: ChatRequest, upstream_model: str) -> UpstreamCall:
    body: dict = {
        "model": upstream_model,
        "max_tokens": DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
        "messages": _messages(request.messages),
    }
    if request.system:
        body["system"] = request.system
    if request.temperature is not None:
        # Other protocols allow up to 2; Anthropic refuses anything above 1.
        body["temperature"] = min(request.temperature, 1.0)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.tools:
        body["tools"] = [
            {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
            if tool.description
            else {"name": tool.name, "input_schema": tool.parameters}
            for tool in request.tools
        ]
        if request.tool_choice:
            choice = {"type": _TOOL_CHOICE_TO_ANTHROPIC[request.tool_choice]}
            if request.tool_choice == "tool":
                choice["name"] = request.tool_choice_name
            body["tool_choice"] = choice
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if request.stream:
        body["stream"] = True
    return UpstreamCall(path=PATH, body=body, stream=request.stream)


def _upstream_error(body) -> UpstreamFormatError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        kind = error.get("type", "error")
        return UpstreamFormatError(f"Anthropic {kind}: {error.get('message', '')}".strip())
    return UpstreamFormatError("Anthropic answered with an error.")


def _read_usage(raw, base: Usage | None = None) -> Usage:
    """Anthropic usage to internal; fields absent from ``raw`` keep ``base``'s values."""
    usage = base or Usage()
    if not isinstance(raw, dict):
        return Usage(**vars(usage))

    def count(key: str, default: int) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    return Usage(
        input_tokens=count("input_tokens", usage.input_tokens),
        output_tokens=count("output_tokens", usage.output_tokens),
        cache_read_tokens=count("cache_read_input_tokens", usage.cache_read_tokens),
        cache_write_tokens=count("cache_creation_input_tokens", usage.cache_write_tokens),
    )


def _stop_reason(value) -> str:
    return _STOP_FROM_ANTHROPIC.get(value, "end_turn") if isinstance(value, str) else "end_turn"


def parse_response(body: dict) -> ChatResponse:
    if not isinstance(body, dict):
        raise UpstreamFormatError("The Anthropic answer is not a JSON object.")
    if body.get("type") == "error":
        raise _upstream_error(body)
    content = body.get("content")
    if body.get("type") != "message" or not isinstance(content, list):
        raise UpstreamFormatError("The Anthropic answer is not a message.")
    parts: list[TextPart | ToolCall] = []
    for block in content:
        if not isinstance(block, dict):
            raise UpstreamFormatError("An Anthropic content block is not an object.")
        if block.get("type") == "text":
            parts.append(TextPart(str(block.get("text", ""))))
        elif block.get("type") == "tool_use":
            arguments = block.get("input") if isinstance(block.get("input"), dict) else {}
            parts.append(
                ToolCall(
                    id=str(block.get("id", "")),
                    name=str(block.get("name", "")),
                    arguments=json.dumps(arguments),
                )
            )
        # thinking, redacted_thinking and server tool blocks have no internal form
    stop_reason = _stop_reason(body.get("stop_reason"))
    stop_sequence = body.get("stop_sequence") if stop_reason == "stop_sequence" else ""
    return ChatResponse(
        id=str(body.get("id", "")),
        model=str(body.get("model", "")),
        content=parts,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence or "",
        usage=_read_usage(body.get("usage")),
    )


class StreamParser:
    """Anthropic's SSE to internal events. Pings and unknown event types are ignored (the
    protocol may add some); thinking and server-tool blocks are dropped and the remaining
    blocks renumbered from 0; an ``error`` event raises UpstreamFormatError."""

    def __init__(self):
        self.indices: dict[int, int] = {}  # upstream block index -> internal index
        self.next_index = 0
        self.usage = Usage()
        self.stop_reason = "end_turn"
        self.stop_sequence = ""
        self.delta_seen = False
        self.ended = False

    def feed(self, event: SSE) -> list[StreamEvent]:
        try:
            data = event.json()
        except ValueError:
            raise UpstreamFormatError("An Anthropic stream event is not JSON.") from None
        if not isinstance(data, dict):
            raise UpstreamFormatError("An Anthropic stream event is not a JSON object.")
        kind = data.get("type") or event.event
        if kind == "error":
            raise _upstream_error(data)
        if self.ended:
            return []
        if kind == "message_start":
            message = data.get("message")
            if not isinstance(message, dict):
                raise UpstreamFormatError("message_start without a message.")
            self.usage = _read_usage(message.get("usage"))
            start_usage = Usage(  # what is known early: the input side
                input_tokens=self.usage.input_tokens,
                cache_read_tokens=self.usage.cache_read_tokens,
                cache_write_tokens=self.usage.cache_write_tokens,
            )
            return [
                MessageStart(
                    id=str(message.get("id", "")),
                    model=str(message.get("model", "")),
                    usage=start_usage,
                )
            ]
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "content_block_stop":
            index = self.indices.get(data.get("index"))
            return [BlockStop(index)] if index is not None else []
        if kind == "message_delta":
            self.delta_seen = True
            delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
            if delta.get("stop_reason") is not None:
                self.stop_reason = _stop_reason(delta.get("stop_reason"))
                self.stop_sequence = delta.get("stop_sequence") or ""
            self.usage = _read_usage(data.get("usage"), self.usage)
            return []
        if kind == "message_stop":
            return self._end()
        return []  # ping, and event types added after this codec was written

    def close(self) -> list[StreamEvent]:
        if self.ended:
            return []
        if self.delta_seen:  # only message_stop is missing: the answer is complete
            return self._end()
        raise UpstreamFormatError("The Anthropic stream ended before message_stop.")

    def _end(self) -> list[StreamEvent]:
        self.ended = True
        stop_sequence = self.stop_sequence if self.stop_reason == "stop_sequence" else ""
        return [MessageEnd(self.stop_reason, stop_sequence, Usage(**vars(self.usage)))]

    def _block_start(self, data: dict) -> list[StreamEvent]:
        block = data.get("content_block")
        upstream_index = data.get("index")
        if not isinstance(block, dict) or not isinstance(upstream_index, int):
            raise UpstreamFormatError("content_block_start without a block.")
        kind = block.get("type")
        if kind not in ("text", "tool_use"):
            return []
        index = self.next_index
        self.indices[upstream_index] = index
        self.next_index += 1
        if kind == "text":
            events: list[StreamEvent] = [TextStart(index)]
            if block.get("text"):
                events.append(TextDelta(index, str(block["text"])))
            return events
        events = [ToolCallStart(index, str(block.get("id", "")), str(block.get("name", "")))]
        if isinstance(block.get("input"), dict) and block["input"]:
            events.append(ToolCallDelta(index, json.dumps(block["input"])))
        return events

    def _block_delta(self, data: dict) -> list[StreamEvent]:
        index = self.indices.get(data.get("index"))
        delta = data.get("delta")
        if index is None or not isinstance(delta, dict):
            return []
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [TextDelta(index, str(delta["text"]))]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            return [ToolCallDelta(index, str(delta["partial_json"]))]
        return []  # thinking_delta, signature_delta, citations_delta
