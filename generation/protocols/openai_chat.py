"""OpenAI Chat Completions (``POST /v1/chat/completions``), both sides of the gateway.

The same wire format is spoken by OpenAI-compatible upstreams (DeepSeek, vLLM, Ollama); the few
extras of theirs that carry meaning are read too (DeepSeek's ``prompt_cache_hit_tokens``, vLLM's
``stop_reason``, tool calls under ``finish_reason: "stop"``).

Translation notes:
- system and developer messages are joined into ``ChatRequest.system`` (wherever they appear);
- a run of ``tool`` messages becomes one user message of ToolResult parts, named after the
  matching call earlier in the history;
- tool results cannot carry images in Chat Completions: upstream, their images follow in a user
  message right after the tool messages.
"""

import json
import re
import time

from generation.protocols.base import (
    SSE,
    ProtocolError,
    UpstreamCall,
    UpstreamFormatError,
    sse_frame,
)
from generation.protocols.common import (
    MAX_TOKENS_LIMIT,
    TOOL_CHOICES,
    check_tool_choice_name,
    check_tool_type,
    count,
    empty_array,
    error_message,
    field,
    id_base,
    image_from_data_url,
    image_url,
    invalid_type,
    invalid_value,
    missing,
    openai_usage,
    optional,
    parse_function,
    prefixed,
    render_function,
    require,
    tool_call_id,
    tool_choice_without_tools,
)
from generation.protocols.internal import (
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    MessageEnd,
    MessageStart,
    StopReason,
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

PATH = "/chat/completions"  # under the channel's base URL, which ends in /v1
ID_PREFIX = "chatcmpl-"
MAX_STOP_SEQUENCES = 4
ROLES = ["system", "developer", "user", "assistant", "tool"]

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
}
STOP_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
}

# OpenAI's reasoning models refuse ``max_tokens``; most compatible servers only know it.
_MAX_COMPLETION_TOKENS_MODELS = re.compile(r"^(o\d|gpt-5|gpt-[6-9])")


# --- Caller side: request ------------------------------------------------------------------------


def parse_request(body, *, model: str | None = None) -> ChatRequest:
    """Validate a Chat Completions request body and translate it to the internal form."""
    if not isinstance(body, dict):
        raise ProtocolError("The request body must be a JSON object.")
    if body.get("model") is None and model:  # the body names the model; the argument is a fallback
        body = {**body, "model": model}
    model = require(body, "model", str)
    if not model.strip():
        raise ProtocolError("Invalid value for 'model': it must not be empty.", "model")
    messages = require(body, "messages", list)
    if not messages:
        raise empty_array("messages")
    n = optional(body, "n", int, minimum=1)
    if n is not None and n > 1:
        raise ProtocolError(
            "'n' greater than 1 is not supported: this gateway returns a single choice.", "n"
        )
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise ProtocolError(
            "The deprecated 'functions' and 'function_call' parameters are not supported; "
            "use 'tools' and 'tool_choice'.",
            "functions" if body.get("functions") is not None else "function_call",
        )
    system, turns = _parse_messages(messages)
    tools = _parse_tools(body.get("tools"))
    tool_choice, tool_choice_name = _parse_tool_choice(body.get("tool_choice"), tools)
    max_tokens = optional(body, "max_tokens", int, minimum=1, maximum=MAX_TOKENS_LIMIT)
    max_completion = optional(
        body, "max_completion_tokens", int, minimum=1, maximum=MAX_TOKENS_LIMIT
    )
    stream = bool(optional(body, "stream", bool))
    return ChatRequest(
        model=model,
        messages=turns,
        system=system,
        tools=tools,
        tool_choice=tool_choice,
        tool_choice_name=tool_choice_name,
        max_tokens=max_completion if max_completion is not None else max_tokens,
        temperature=optional(body, "temperature", float, minimum=0, maximum=2),
        top_p=optional(body, "top_p", float, minimum=0, maximum=1),
        stop=_parse_stop(body.get("stop")),
        stream=stream,
        stream_usage=_parse_stream_options(body.get("stream_options"), stream),
        user=optional(body, "user", str) or "",
    )


def _parse_messages(items: list) -> tuple[str, list[Message]]:
    system: list[str] = []
    messages: list[Message] = []
    call_names: dict[str, str] = {}
    for i, item in enumerate(items):
        path = f"messages[{i}]"
        if not isinstance(item, dict):
            raise invalid_type(path, "an object", item)
        role = field(item, "role", str, f"{path}.role", required=True)
        if role in ("system", "developer"):
            system.extend(text for text in _texts(item, path) if text)
        elif role == "user":
            messages.append(Message("user", _user_parts(item, path)))
        elif role == "assistant":
            parts = _assistant_parts(item, path, call_names)
            if parts:  # an empty assistant turn says nothing any upstream could use
                messages.append(Message("assistant", parts))
        elif role == "tool":
            result = _tool_result(item, path, call_names)
            if messages and _only_tool_results(messages[-1]):
                messages[-1].parts.append(result)
            else:
                messages.append(Message("user", [result]))
        elif role == "function":
            raise ProtocolError(
                "Messages with the deprecated role 'function' are not supported; "
                "use 'tool_calls' and role 'tool'.",
                f"{path}.role",
            )
        else:
            raise invalid_value(f"{path}.role", role, ROLES)
    return "\n\n".join(system), messages


def _only_tool_results(message: Message) -> bool:
    return (
        message.role == "user"
        and bool(message.parts)
        and all(isinstance(part, ToolResult) for part in message.parts)
    )


def _texts(item: dict, path: str) -> list[str]:
    """The text of a message whose content is a string or an array of text parts."""
    content = item.get("content")
    param = f"{path}.content"
    if content is None:
        raise missing(param)
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise invalid_type(param, "one of a string or array of objects", content)
    texts = []
    for j, part in enumerate(content):
        texts.append(_text_part(part, f"{param}[{j}]", ["text"]))
    return texts


def _text_part(part, path: str, types: list[str]) -> str:
    if not isinstance(part, dict):
        raise invalid_type(path, "an object", part)
    kind = field(part, "type", str, f"{path}.type", required=True)
    if kind not in types:
        raise invalid_value(f"{path}.type", kind, types)
    key = "refusal" if kind == "refusal" else "text"
    return field(part, key, str, f"{path}.{key}", required=True)


def _user_parts(item: dict, path: str) -> list:
    content = item.get("content")
    param = f"{path}.content"
    if content is None:
        raise missing(param)
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise invalid_type(param, "one of a string or array of objects", content)
    if not content:
        raise empty_array(param)
    parts: list = []
    for j, part in enumerate(content):
        part_path = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise invalid_type(part_path, "an object", part)
        kind = field(part, "type", str, f"{part_path}.type", required=True)
        if kind == "text":
            parts.append(TextPart(field(part, "text", str, f"{part_path}.text", required=True)))
        elif kind == "image_url":
            image = part.get("image_url")
            image_path = f"{part_path}.image_url"
            if isinstance(image, dict):
                url = field(image, "url", str, f"{image_path}.url", required=True)
            elif isinstance(image, str):  # lenient: a bare URL
                url = image
            elif image is None:
                raise missing(image_path)
            else:
                raise invalid_type(image_path, "an object", image)
            parts.append(image_from_data_url(url, image_path))
        else:
            raise invalid_value(f"{part_path}.type", kind, ["text", "image_url"])
    return parts


def _assistant_parts(item: dict, path: str, call_names: dict[str, str]) -> list:
    parts: list = []
    content = item.get("content")
    param = f"{path}.content"
    if isinstance(content, str):
        if content:
            parts.append(TextPart(content))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            text = _text_part(part, f"{param}[{j}]", ["text", "refusal"])
            if text:
                parts.append(TextPart(text))
    elif content is not None:
        raise invalid_type(param, "one of a string or array of objects", content)
    calls = field(item, "tool_calls", list, f"{path}.tool_calls")
    for j, call in enumerate(calls or []):
        call_path = f"{path}.tool_calls[{j}]"
        if not isinstance(call, dict):
            raise invalid_type(call_path, "an object", call)
        kind = field(call, "type", str, f"{call_path}.type") or "function"
        if kind != "function":
            raise invalid_value(f"{call_path}.type", kind, ["function"])
        call_id = field(call, "id", str, f"{call_path}.id", required=True)
        function = field(call, "function", dict, f"{call_path}.function", required=True)
        name = field(function, "name", str, f"{call_path}.function.name", required=True)
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # lenient: an object where JSON text is due
            arguments = json.dumps(arguments)
        elif arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            raise invalid_type(f"{call_path}.function.arguments", "a string", arguments)
        call_names[call_id] = name
        parts.append(ToolCall(id=call_id, name=name, arguments=arguments or "{}"))
    return parts


def _tool_result(item: dict, path: str, call_names: dict[str, str]) -> ToolResult:
    call_id = field(item, "tool_call_id", str, f"{path}.tool_call_id", required=True)
    texts = _texts(item, path)
    return ToolResult(
        tool_call_id=call_id,
        content=[TextPart(text) for text in texts if text],
        name=call_names.get(call_id, ""),
    )


def _parse_tools(value) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid_type("tools", "an array", value)
    tools = []
    for i, spec in enumerate(value):
        path = f"tools[{i}]"
        if not isinstance(spec, dict):
            raise invalid_type(path, "an object", spec)
        check_tool_type(spec, path)
        function = field(spec, "function", dict, f"{path}.function", required=True)
        tools.append(parse_function(function, f"{path}.function"))
    return tools


def _parse_tool_choice(value, tools: list[Tool]) -> tuple:
    if value is None:
        return None, ""
    if isinstance(value, str):
        if value not in TOOL_CHOICES:
            raise invalid_value("tool_choice", value, TOOL_CHOICES)
        if value == "required" and not tools:
            raise tool_choice_without_tools()
        return value, ""
    if not isinstance(value, dict):
        raise invalid_type("tool_choice", "one of a string or object", value)
    kind = field(value, "type", str, "tool_choice.type", required=True)
    if kind != "function":
        raise ProtocolError(
            f"Unsupported tool_choice type '{kind}': use 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}.',
            "tool_choice.type",
        )
    function = field(value, "function", dict, "tool_choice.function", required=True)
    name = field(function, "name", str, "tool_choice.function.name", required=True)
    return "tool", check_tool_choice_name(name, tools, "tool_choice.function.name")


def _parse_stream_options(value, stream: bool) -> bool:
    if value is None:
        return False
    if not stream:
        raise ProtocolError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    if not isinstance(value, dict):
        raise invalid_type("stream_options", "an object", value)
    return bool(field(value, "include_usage", bool, "stream_options.include_usage"))


def _parse_stop(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, list):
        raise invalid_type("stop", "one of a string or array of strings", value)
    if len(value) > MAX_STOP_SEQUENCES:
        raise ProtocolError(
            f"Invalid 'stop': too many stop sequences ({len(value)}); "
            f"at most {MAX_STOP_SEQUENCES} are allowed.",
            "stop",
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid_type(f"stop[{i}]", "a string", item)
    return [item for item in value if item]


# --- Caller side: response -----------------------------------------------------------------------


def render_response(response: ChatResponse, request: ChatRequest) -> dict:
    """A ``chat.completion`` object for the caller."""
    response_id = prefixed(response.id, ID_PREFIX)
    base = id_base(response_id, ID_PREFIX)
    text = response.text
    message: dict = {"role": "assistant", "content": text or None, "refusal": None}
    calls = [part for part in response.content if isinstance(part, ToolCall)]
    if calls:
        message["tool_calls"] = [
            {
                "id": tool_call_id(call.id, f"call_{base}_{i}"),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or "{}"},
            }
            for i, call in enumerate(calls)
        ]
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model or response.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(response.stop_reason, bool(calls)),
            }
        ],
        "usage": render_usage(response.usage),
    }


def finish_reason(stop_reason: str, called_tools: bool) -> str:
    # Callers loop on "tool_calls"; some upstreams (Gemini) end a tool turn with a plain stop.
    if called_tools and stop_reason in ("end_turn", "stop_sequence"):
        return "tool_calls"
    return FINISH_REASONS.get(stop_reason, "stop")


def render_usage(usage: Usage) -> dict:
    prompt = usage.total_input
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": _prompt_details(usage),
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _prompt_details(usage: Usage) -> dict:
    details = {"cached_tokens": usage.cache_read_tokens}
    if usage.cache_write_tokens:
        details["cache_write_tokens"] = usage.cache_write_tokens
    return details


class StreamRenderer:
    """Internal stream events to ``chat.completion.chunk`` SSE frames, then ``[DONE]``."""

    def __init__(self, request: ChatRequest, response_id: str, created: int):
        self.request = request
        self.id = prefixed(response_id, ID_PREFIX)
        self._base = id_base(self.id, ID_PREFIX)
        self.created = created
        self.model = request.model
        self._started = False
        self._ended = False  # the last choice chunk is out
        self._done = False  # [DONE] is out
        self._tools: dict[int, int] = {}  # block index -> tool call index

    def feed(self, event: StreamEvent) -> list[bytes]:
        if self._ended:
            return []
        if isinstance(event, MessageStart):
            self.model = self.request.model or event.model
            return self._start()
        out = self._start()
        if isinstance(event, TextDelta) and event.text:
            out.append(self._chunk({"content": event.text}))
        elif isinstance(event, ToolCallStart):
            index = len(self._tools)
            self._tools[event.index] = index
            call = {
                "index": index,
                "id": tool_call_id(event.id, f"call_{self._base}_{index}"),
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            out.append(self._chunk({"tool_calls": [call]}))
        elif isinstance(event, ToolCallDelta) and event.arguments and event.index in self._tools:
            call = {"index": self._tools[event.index], "function": {"arguments": event.arguments}}
            out.append(self._chunk({"tool_calls": [call]}))
        elif isinstance(event, MessageEnd):
            self._ended = True
            reason = finish_reason(event.stop_reason, bool(self._tools))
            out.append(self._chunk({}, reason))
            if self.request.stream_usage:
                out.append(self._frame([], usage=render_usage(event.usage)))
        return out

    def finish(self) -> list[bytes]:
        """``[DONE]``, after ending the message if no MessageEnd did."""
        if self._done:
            return []
        out = [] if self._ended else self.feed(MessageEnd())
        self._done = True
        return [*out, sse_frame("[DONE]")]

    def fail(self, message: str) -> list[bytes]:
        if self._done:
            return []
        self._ended = self._done = True
        error = {"message": message, "type": "api_error", "param": None, "code": "upstream_error"}
        return [sse_frame({"error": error}), sse_frame("[DONE]")]

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": "", "refusal": None})]

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._frame([choice], usage=None)

    def _frame(self, choices: list, usage) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.request.stream_usage:  # OpenAI sends "usage": null until the usage chunk
            chunk["usage"] = usage
        return sse_frame(chunk)


# --- Upstream side: request ----------------------------------------------------------------------


def upstream_request(request: ChatRequest, upstream_model: str) -> UpstreamCall:
    """A Chat Completions call to an OpenAI or OpenAI-compatible upstream."""
    messages: list[dict] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for message in request.messages:
        if message.role == "assistant":
            messages.extend(_render_assistant(message))
        else:
            messages.extend(_render_user(message))
    body: dict = {"model": upstream_model, "messages": messages}
    if request.tools:
        body["tools"] = [
            {"type": "function", "function": render_function(tool)} for tool in request.tools
        ]
    if request.tool_choice == "tool":
        body["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice_name}}
    elif request.tool_choice:
        body["tool_choice"] = request.tool_choice
    if request.max_tokens is not None:
        key = (
            "max_completion_tokens"
            if _MAX_COMPLETION_TOKENS_MODELS.match(upstream_model)
            else "max_tokens"
        )
        body[key] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    if request.user:
        body["user"] = request.user
    if request.stream:
        # Always ask for usage: billing needs it; the renderer drops it if the caller did not ask.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return UpstreamCall(path=PATH, body=body, stream=request.stream)


def _render_assistant(message: Message) -> list[dict]:
    texts = [part.text for part in message.parts if isinstance(part, TextPart)]
    calls = [part for part in message.parts if isinstance(part, ToolCall)]
    if not texts and not calls:
        return []
    rendered: dict = {"role": "assistant"}
    if len(texts) > 1:
        rendered["content"] = [{"type": "text", "text": text} for text in texts]
    else:
        rendered["content"] = texts[0] if texts else None
    if calls:
        rendered["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or "{}"},
            }
            for call in calls
        ]
    return [rendered]


def _render_user(message: Message) -> list[dict]:
    rendered: list[dict] = []
    results = [part for part in message.parts if isinstance(part, ToolResult)]
    others = [part for part in message.parts if not isinstance(part, ToolResult)]
    result_images: list[ImagePart] = []
    for result in results:  # tool messages must follow the assistant's tool_calls at once
        text = "\n\n".join(p.text for p in result.content if isinstance(p, TextPart))
        result_images.extend(p for p in result.content if isinstance(p, ImagePart))
        rendered.append(
            {
                "role": "tool",
                "tool_call_id": result.tool_call_id,
                "content": f"Error: {text}" if result.is_error else text,
            }
        )
    content = result_images + others
    if content:  # an empty user turn says nothing
        if len(content) == 1 and isinstance(content[0], TextPart):
            rendered.append({"role": "user", "content": content[0].text})
        else:
            rendered.append({"role": "user", "content": [_render_part(p) for p in content]})
    return rendered


def _render_part(part) -> dict:
    if isinstance(part, ImagePart):
        return {"type": "image_url", "image_url": {"url": image_url(part)}}
    return {"type": "text", "text": part.text}


# --- Upstream side: response ---------------------------------------------------------------------


def parse_response(body) -> ChatResponse:
    """A ``chat.completion`` object from an upstream, in the internal form."""
    if not isinstance(body, dict):
        raise UpstreamFormatError("The upstream answer is not a JSON object.")
    if body.get("error"):
        raise UpstreamFormatError(error_message(body["error"]))
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamFormatError("The upstream answer has no choices.")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise UpstreamFormatError("The upstream choice has no message.")
    content: list = []
    text = _upstream_text(message.get("content")) or _upstream_text(message.get("refusal"))
    if text:
        content.append(TextPart(text))
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise UpstreamFormatError("The upstream tool_calls are not a list.")
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise UpstreamFormatError("An upstream tool call has no function name.")
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments)
        content.append(
            ToolCall(
                id=str(call.get("id") or f"call_{i}"),
                name=function["name"],
                arguments=arguments or "{}",
            )
        )
    stop_reason, stop_sequence = _stop_reason(choice, bool(calls))
    usage = body.get("usage")
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=content,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        usage=parse_usage(usage) if isinstance(usage, dict) else Usage(),
    )


def _upstream_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some compatible servers answer with content parts
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("text")
        )
    return ""


def _stop_reason(choice: dict, called_tools: bool) -> tuple[StopReason, str]:
    reason = STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn")
    if called_tools and reason == "end_turn":  # Ollama reports tool calls with "stop"
        return "tool_use", ""
    matched = choice.get("stop_reason")  # vLLM: the stop string that ended the turn
    if reason == "end_turn" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    return reason, ""


def parse_usage(usage: dict) -> Usage:
    """OpenAI usage (prompt tokens include cached ones) in the internal form."""
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached = count(details, "cached_tokens")
    if not cached:  # DeepSeek reports its context cache this way
        cached = count(usage, "prompt_cache_hit_tokens")
    completion_details = usage.get("completion_tokens_details")
    return openai_usage(
        total_input=count(usage, "prompt_tokens"),
        cached=cached,
        written=count(details, "cache_write_tokens"),
        output=count(usage, "completion_tokens"),
        reasoning=count(completion_details, "reasoning_tokens"),
    )


class _Block:
    """One block of the answer as the parser sees it: pending until it may start."""

    def __init__(self, kind: str, call_id: str = "", name: str = ""):
        self.kind = kind  # "text" | "tool"
        self.id = call_id
        self.name = name
        self.text = ""  # all text or arguments received
        self.index = -1  # internal block index, given when it starts
        self.state = "pending"  # -> "open" -> "closed"


class StreamParser:
    """``chat.completion.chunk`` SSE events from an upstream to internal stream events.

    Chat Completions does not delimit blocks, and parallel tool calls may interleave their
    argument fragments by ``index``. Internally one block is open at a time, so a block that
    appears while another is open waits (buffered) until the open one is complete: text is
    complete as soon as something else follows it, a tool call when its arguments parse as
    JSON. The usual sequential stream thus flows through untouched. ``MessageEnd`` waits for
    ``[DONE]`` (or ``close()``), because the usage chunk comes after the finish reason.
    """

    def __init__(self):
        self._started = False
        self._ended = False
        self._id = ""
        self._blocks: list[_Block] = []
        self._tools: dict[int, _Block] = {}
        self._current: _Block | None = None
        self._next_index = 0
        self._finish_reason = ""
        self._stop_sequence = ""
        self._usage = Usage()

    def feed(self, event: SSE) -> list[StreamEvent]:
        data = event.data.strip()
        if self._ended or not data:
            return []
        if data == "[DONE]":
            return self._end()
        try:
            chunk = json.loads(data)
        except ValueError:
            raise UpstreamFormatError("An upstream stream chunk is not JSON.") from None
        if not isinstance(chunk, dict):
            raise UpstreamFormatError("An upstream stream chunk is not a JSON object.")
        if chunk.get("error"):
            raise UpstreamFormatError(error_message(chunk["error"]))
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            self._id = str(chunk.get("id") or "")
            out.append(MessageStart(id=self._id, model=str(chunk.get("model") or "")))
        if isinstance(chunk.get("usage"), dict):
            self._usage = parse_usage(chunk["usage"])
        choices = chunk.get("choices")
        if choices is None:  # vLLM's usage chunk may say null
            choices = []
        if not isinstance(choices, list):
            raise UpstreamFormatError("The upstream chunk's choices are not a list.")
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                out.extend(self._delta(delta))
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
                matched = choice.get("stop_reason")
                if isinstance(matched, str):
                    self._stop_sequence = matched
                out.extend(self._close_all())
        return out

    def close(self) -> list[StreamEvent]:
        """The upstream closed the stream (normally after ``[DONE]``)."""
        if self._ended:
            return []
        return self._end()

    def _delta(self, delta: dict) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                last = self._blocks[-1] if self._blocks else None
                if last is None or last.kind != "text" or last.state == "closed":
                    last = _Block("text")
                    self._blocks.append(last)
                out.extend(self._fragment(last, text))
        calls = delta.get("tool_calls")
        if calls is None:
            calls = []
        if not isinstance(calls, list):
            raise UpstreamFormatError("The upstream delta's tool_calls are not a list.")
        for position, call in enumerate(calls):
            if not isinstance(call, dict):
                raise UpstreamFormatError("An upstream tool call delta is not an object.")
            index = call.get("index", position)
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            block = self._tools.get(index)
            if block is None:
                block = _Block("tool")
                self._tools[index] = block
                self._blocks.append(block)
            if call.get("id") and not block.id:
                block.id = str(call["id"])
            if function.get("name") and not block.name:
                block.name = str(function["name"])
            arguments = function.get("arguments")
            if isinstance(arguments, dict):
                arguments = json.dumps(arguments)
            if isinstance(arguments, str) and arguments:
                out.extend(self._fragment(block, arguments))
        out.extend(self._advance())
        return out

    def _fragment(self, block: _Block, text: str) -> list[StreamEvent]:
        if block.state == "closed":
            if text.strip():
                raise UpstreamFormatError("Upstream tool call arguments continued after the end.")
            return []
        block.text += text
        if block.state == "pending":
            return self._advance()
        if block.kind == "text":
            return [TextDelta(block.index, text)]
        return [ToolCallDelta(block.index, text)]

    def _advance(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for block in self._blocks:
            if block.state != "pending":
                continue
            if block.kind == "text" and not block.text:
                break
            if self._current is not None:
                if not _complete(self._current):
                    break
                out.append(self._stop(self._current))
            out.extend(self._open(block))
        return out

    def _open(self, block: _Block) -> list[StreamEvent]:
        block.index = self._next_index
        self._next_index += 1
        block.state = "open"
        self._current = block
        if block.kind == "text":
            return [TextStart(block.index), TextDelta(block.index, block.text)]
        if not block.id:
            block.id = f"call_{self._id}_{block.index}"
        out: list[StreamEvent] = [ToolCallStart(block.index, block.id, block.name)]
        if block.text:
            out.append(ToolCallDelta(block.index, block.text))
        return out

    def _stop(self, block: _Block) -> BlockStop:
        block.state = "closed"
        self._current = None
        return BlockStop(block.index)

    def _close_all(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._current is not None:
            out.append(self._stop(self._current))
        for block in self._blocks:
            if block.state == "pending" and (block.kind == "tool" or block.text):
                out.extend(self._open(block))
                out.append(self._stop(block))
        return out

    def _end(self) -> list[StreamEvent]:
        if not self._started:
            raise UpstreamFormatError("The upstream stream ended before any chunk.")
        out = self._close_all()
        self._ended = True
        called_tools = any(block.kind == "tool" for block in self._blocks)
        stop_reason, stop_sequence = _stop_reason(
            {"finish_reason": self._finish_reason, "stop_reason": self._stop_sequence},
            called_tools,
        )
        out.append(MessageEnd(stop_reason, stop_sequence, self._usage))
        return out


def _complete(block: _Block) -> bool:
    """Whether an open block can end because another one follows."""
    if block.kind == "text":
        return True
    try:
        json.loads(block.text)
    except ValueError:
        return False
    return True
