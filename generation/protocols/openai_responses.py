"""OpenAI Responses (``POST /v1/responses``), both sides of the gateway.

The gateway is stateless: it does not store responses, so ``previous_response_id``,
``conversation`` and ``item_reference`` inputs are refused, and the caller sends the whole
history in ``input``. Only function tools exist here; built-in tools (web_search, file_search,
...) are refused. Reasoning items in the input are skipped: they only mean something to the
model that wrote them. Responses has no stop sequences: upstream, ``ChatRequest.stop`` is
dropped.

Ids: the response is ``resp_<base>``; its output items are ``msg_<base>_<n>`` and
``fc_<base>_<n>`` (``n`` the output index), derived from the response id so that renders are
deterministic.
"""

import json
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

PATH = "/responses"  # under the channel's base URL, which ends in /v1
ID_PREFIX = "resp_"
ROLES = ["user", "assistant", "system", "developer"]
# Parameters that need state the gateway does not keep.
STATEFUL = {
    "previous_response_id": "this gateway does not store responses; send the whole "
    "conversation in 'input'",
    "conversation": "this gateway does not store conversations; send the whole conversation "
    "in 'input'",
}
INCOMPLETE_REASONS: dict[str, StopReason] = {
    "max_output_tokens": "max_tokens",
    "content_filter": "content_filter",
}


# --- Caller side: request ------------------------------------------------------------------------


def parse_request(body, *, model: str | None = None) -> ChatRequest:
    """Validate a Responses request body and translate it to the internal form."""
    if not isinstance(body, dict):
        raise ProtocolError("The request body must be a JSON object.")
    if body.get("model") is None and model:  # the body names the model; the argument is a fallback
        body = {**body, "model": model}
    model = require(body, "model", str)
    if not model.strip():
        raise ProtocolError("Invalid value for 'model': it must not be empty.", "model")
    for name, why in STATEFUL.items():
        if body.get(name) is not None:
            raise ProtocolError(f"'{name}' is not supported: {why}.", name)
    if body.get("background"):
        raise ProtocolError(
            "Background responses are not supported: this gateway answers synchronously "
            "or streams.",
            "background",
        )
    raw_input = body.get("input")
    if raw_input is None:
        raise missing("input")
    instructions = optional(body, "instructions", str) or ""
    if isinstance(raw_input, str):
        if not raw_input:
            raise ProtocolError("Invalid 'input': empty string.", "input")
        system, messages = [], [Message("user", [TextPart(raw_input)])]
    elif isinstance(raw_input, list):
        if not raw_input:
            raise empty_array("input")
        system, messages = _parse_items(raw_input)
    else:
        raise invalid_type("input", "one of a string or array of objects", raw_input)
    tools = _parse_tools(body.get("tools"))
    tool_choice, tool_choice_name = _parse_tool_choice(body.get("tool_choice"), tools)
    return ChatRequest(
        model=model,
        messages=messages,
        system="\n\n".join(text for text in [instructions, *system] if text),
        tools=tools,
        tool_choice=tool_choice,
        tool_choice_name=tool_choice_name,
        max_tokens=optional(body, "max_output_tokens", int, minimum=1, maximum=MAX_TOKENS_LIMIT),
        temperature=optional(body, "temperature", float, minimum=0, maximum=2),
        top_p=optional(body, "top_p", float, minimum=0, maximum=1),
        stream=bool(optional(body, "stream", bool)),
        user=optional(body, "user", str) or "",
    )


def _parse_items(items: list) -> tuple[list[str], list[Message]]:
    system: list[str] = []
    messages: list[Message] = []
    call_names: dict[str, str] = {}

    def assistant_turn() -> Message:
        # A turn's text and its function calls are separate items: one internal message.
        if not messages or messages[-1].role != "assistant":
            messages.append(Message("assistant", []))
        return messages[-1]

    for i, item in enumerate(items):
        path = f"input[{i}]"
        if not isinstance(item, dict):
            raise invalid_type(path, "an object", item)
        kind = field(item, "type", str, f"{path}.type")
        if kind is None and "role" not in item:
            raise missing(f"{path}.type")
        kind = kind or "message"
        if kind == "message":
            role = field(item, "role", str, f"{path}.role", required=True)
            if role not in ROLES:
                raise invalid_value(f"{path}.role", role, ROLES)
            parts = _content(item, path, role)
            if role in ("system", "developer"):
                system.extend(part.text for part in parts if part.text)
            elif role == "assistant":
                assistant_turn().parts.extend(part for part in parts if part.text)
            else:
                messages.append(Message("user", parts))
        elif kind == "function_call":
            call_id = field(item, "call_id", str, f"{path}.call_id", required=True)
            name = field(item, "name", str, f"{path}.name", required=True)
            arguments = field(item, "arguments", str, f"{path}.arguments", required=True)
            call_names[call_id] = name
            assistant_turn().parts.append(ToolCall(call_id, name, arguments or "{}"))
        elif kind == "function_call_output":
            call_id = field(item, "call_id", str, f"{path}.call_id", required=True)
            result = ToolResult(
                tool_call_id=call_id,
                content=_output(item, f"{path}.output"),
                name=call_names.get(call_id, ""),
            )
            last = messages[-1] if messages else None
            if last and last.role == "user" and all(isinstance(p, ToolResult) for p in last.parts):
                last.parts.append(result)
            else:
                messages.append(Message("user", [result]))
        elif kind == "reasoning":
            continue  # meaningful only to the model that produced it
        elif kind == "item_reference":
            raise ProtocolError(
                "Item references are not supported: this gateway does not store items; "
                "send the items themselves.",
                f"{path}.type",
            )
        else:
            raise ProtocolError(
                f"Unsupported input item type '{kind}': supported types are 'message', "
                "'function_call', 'function_call_output' and 'reasoning'.",
                f"{path}.type",
            )
    # Assistant items without text or calls leave nothing behind.
    return system, [message for message in messages if message.parts]


def _content(item: dict, path: str, role: str) -> list:
    content = item.get("content")
    param = f"{path}.content"
    if content is None:
        raise missing(param)
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise invalid_type(param, "one of a string or array of objects", content)
    if role == "user":
        types = ["input_text", "input_image"]
    elif role == "assistant":
        types = ["output_text", "refusal", "input_text"]
    else:
        types = ["input_text"]
    return [_part(part, f"{param}[{j}]", types) for j, part in enumerate(content)]


def _part(part, path: str, types: list[str]):
    if not isinstance(part, dict):
        raise invalid_type(path, "an object", part)
    kind = field(part, "type", str, f"{path}.type", required=True)
    if kind not in types:
        raise invalid_value(f"{path}.type", kind, types)
    if kind == "input_image":
        url = part.get("image_url")
        if url is None:
            if part.get("file_id") is not None:
                raise ProtocolError(
                    "Images by 'file_id' are not supported: send an 'image_url' "
                    "(https or base64 data URL).",
                    f"{path}.file_id",
                )
            raise missing(f"{path}.image_url")
        if not isinstance(url, str):
            raise invalid_type(f"{path}.image_url", "a string", url)
        return image_from_data_url(url, f"{path}.image_url")
    key = "refusal" if kind == "refusal" else "text"
    return TextPart(field(part, key, str, f"{path}.{key}", required=True))


def _output(item: dict, param: str) -> list:
    """A function call's output: text, or an array of input_text / input_image parts."""
    output = item.get("output")
    if output is None:
        raise missing(param)
    if isinstance(output, str):
        return [TextPart(output)] if output else []
    if not isinstance(output, list):
        raise invalid_type(param, "one of a string or array of objects", output)
    parts = [
        _part(part, f"{param}[{j}]", ["input_text", "input_image"]) for j, part in enumerate(output)
    ]
    return [part for part in parts if not isinstance(part, TextPart) or part.text]


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
        tools.append(parse_function(spec, path))
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
            '{"type": "function", "name": ...}; built-in tools are not available.',
            "tool_choice.type",
        )
    name = field(value, "name", str, "tool_choice.name", required=True)
    return "tool", check_tool_choice_name(name, tools, "tool_choice.name")


# --- Caller side: response -----------------------------------------------------------------------


def render_response(response: ChatResponse, request: ChatRequest) -> dict:
    """A ``response`` object for the caller."""
    response_id = prefixed(response.id, ID_PREFIX)
    base = id_base(response_id, ID_PREFIX)
    output: list[dict] = []
    calls = 0
    for part in response.content:
        if isinstance(part, TextPart):
            last = output[-1] if output else None
            if last is None or last["type"] != "message":
                last = _message_item(f"msg_{base}_{len(output)}", "completed")
                output.append(last)
            last["content"].append(_text_part(part.text))
        elif isinstance(part, ToolCall):
            call_id = tool_call_id(part.id, f"call_{base}_{calls}")
            calls += 1
            item = _call_item(f"fc_{base}_{len(output)}", call_id, part.name, "completed")
            item["arguments"] = part.arguments or "{}"
            output.append(item)
    status, incomplete = _status(response.stop_reason)
    return response_object(
        request,
        response_id=response_id,
        created_at=int(time.time()),
        model=request.model or response.model,
        status=status,
        output=output,
        usage=render_usage(response.usage),
        incomplete_reason=incomplete,
    )


def _status(stop_reason: str) -> tuple[str, str | None]:
    if stop_reason == "max_tokens":
        return "incomplete", "max_output_tokens"
    if stop_reason == "content_filter":
        return "incomplete", "content_filter"
    return "completed", None


def _message_item(item_id: str, status: str) -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": []}


def _call_item(item_id: str, call_id: str, name: str, status: str) -> dict:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": "",
        "call_id": call_id,
        "name": name,
    }


def _text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": []}


def render_usage(usage: Usage) -> dict:
    return {
        "input_tokens": usage.total_input,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_input + usage.output_tokens,
    }


def response_object(
    request: ChatRequest,
    *,
    response_id: str,
    created_at: int,
    model: str,
    status: str,
    output: list[dict],
    usage: dict | None,
    incomplete_reason: str | None = None,
    error: dict | None = None,
) -> dict:
    """The whole ``response`` object, with every field the official SDKs expect."""
    if request.tool_choice == "tool":
        tool_choice: str | dict = {"type": "function", "name": request.tool_choice_name}
    else:
        tool_choice = request.tool_choice or "auto"
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": request.system or None,
        "max_output_tokens": request.max_tokens,
        "max_tool_calls": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "text": {"format": {"type": "text"}},
        "tool_choice": tool_choice,
        "tools": [_render_tool(tool) for tool in request.tools],
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "truncation": "disabled",
        "usage": usage,
        "user": request.user or None,
        "metadata": {},
    }


def _render_tool(tool: Tool) -> dict:
    # Responses makes function tools strict unless told otherwise; strict mode refuses most
    # schemas written for other protocols.
    return {"type": "function", **render_function(tool), "strict": False}


class StreamRenderer:
    """Internal stream events to Responses SSE events (``event: <type>``), numbered by
    ``sequence_number``, ending with ``response.completed`` or ``response.incomplete``."""

    def __init__(self, request: ChatRequest, response_id: str, created: int):
        self.request = request
        self.id = prefixed(response_id, ID_PREFIX)
        self._base = id_base(self.id, ID_PREFIX)
        self.created = created
        self.model = request.model
        self._sequence = 0
        self._output: list[dict] = []
        self._open: dict[int, dict] = {}  # block index -> {"item", "output_index", "text"}
        self._calls = 0
        self._started = False
        self._ended = False

    def feed(self, event: StreamEvent) -> list[bytes]:
        if self._ended:
            return []
        if isinstance(event, MessageStart):
            self.model = self.request.model or event.model
            return self._start()
        out = self._start()
        if isinstance(event, TextStart):
            out.extend(self._text_start(event.index))
        elif isinstance(event, TextDelta):
            if event.index not in self._open:
                out.extend(self._text_start(event.index))
            block = self._open[event.index]
            if event.text and block["item"]["type"] == "message":
                block["text"] += event.text
                out.append(
                    self._event(
                        "response.output_text.delta",
                        item_id=block["item"]["id"],
                        output_index=block["output_index"],
                        content_index=0,
                        delta=event.text,
                        logprobs=[],
                    )
                )
        elif isinstance(event, ToolCallStart):
            out.extend(self._call_start(event))
        elif isinstance(event, ToolCallDelta):
            block = self._open.get(event.index)
            if event.arguments and block and block["item"]["type"] == "function_call":
                block["text"] += event.arguments
                out.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=block["item"]["id"],
                        output_index=block["output_index"],
                        delta=event.arguments,
                    )
                )
        elif isinstance(event, BlockStop):
            out.extend(self._stop(event.index))
        elif isinstance(event, MessageEnd):
            out.extend(self._end(event))
        return out

    def finish(self) -> list[bytes]:
        """Responses streams have no ``[DONE]``; end the response if nothing ended it."""
        if self._ended:
            return []
        return self.feed(MessageEnd())

    def fail(self, message: str) -> list[bytes]:
        if self._ended:
            return []
        self._ended = True
        error_event = self._event("error", code="upstream_error", message=message, param=None)
        failed = self._response("failed", usage=None)
        failed["error"] = {"code": "server_error", "message": message}
        return [error_event, self._event("response.failed", response=failed)]

    def _event(self, kind: str, **fields) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return sse_frame(data, event=kind)

    def _response(self, status: str, usage: dict | None, incomplete: str | None = None) -> dict:
        return response_object(
            self.request,
            response_id=self.id,
            created_at=self.created,
            model=self.model,
            status=status,
            output=self._output if status != "in_progress" else [],
            usage=usage,
            incomplete_reason=incomplete,
        )

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        return [
            self._event("response.created", response=self._response("in_progress", None)),
            self._event("response.in_progress", response=self._response("in_progress", None)),
        ]

    def _text_start(self, index: int) -> list[bytes]:
        output_index = len(self._output)
        item = _message_item(f"msg_{self._base}_{output_index}", "in_progress")
        self._output.append(item)
        self._open[index] = {"item": item, "output_index": output_index, "text": ""}
        return [
            self._event("response.output_item.added", output_index=output_index, item=item),
            self._event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=output_index,
                content_index=0,
                part=_text_part(""),
            ),
        ]

    def _call_start(self, event: ToolCallStart) -> list[bytes]:
        output_index = len(self._output)
        call_id = tool_call_id(event.id, f"call_{self._base}_{self._calls}")
        self._calls += 1
        item = _call_item(f"fc_{self._base}_{output_index}", call_id, event.name, "in_progress")
        self._output.append(item)
        self._open[event.index] = {"item": item, "output_index": output_index, "text": ""}
        return [self._event("response.output_item.added", output_index=output_index, item=item)]

    def _stop(self, index: int) -> list[bytes]:
        block = self._open.pop(index, None)
        if block is None:
            return []
        item, output_index, text = block["item"], block["output_index"], block["text"]
        out = []
        if item["type"] == "message":
            part = _text_part(text)
            out.append(
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=output_index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                )
            )
            out.append(
                self._event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=output_index,
                    content_index=0,
                    part=part,
                )
            )
            item["content"] = [part]
        else:
            item["arguments"] = text or "{}"
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=output_index,
                    arguments=item["arguments"],
                )
            )
        item["status"] = "completed"
        out.append(self._event("response.output_item.done", output_index=output_index, item=item))
        return out

    def _end(self, event: MessageEnd) -> list[bytes]:
        out = []
        for index in list(self._open):
            out.extend(self._stop(index))
        self._ended = True
        status, incomplete = _status(event.stop_reason)
        response = self._response(status, render_usage(event.usage), incomplete)
        out.append(self._event(f"response.{status}", response=response))
        return out


# --- Upstream side: request ----------------------------------------------------------------------


def upstream_request(request: ChatRequest, upstream_model: str) -> UpstreamCall:
    """A Responses call to an OpenAI upstream; nothing is stored upstream."""
    items: list[dict] = []
    for message in request.messages:
        if message.role == "assistant":
            items.extend(_render_assistant(message))
        else:
            items.extend(_render_user(message))
    body: dict = {"model": upstream_model, "input": items, "store": False}
    if request.system:
        body["instructions"] = request.system
    if request.tools:
        body["tools"] = [_render_tool(tool) for tool in request.tools]
    if request.tool_choice == "tool":
        body["tool_choice"] = {"type": "function", "name": request.tool_choice_name}
    elif request.tool_choice:
        body["tool_choice"] = request.tool_choice
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.user:
        body["user"] = request.user
    if request.stream:
        body["stream"] = True
    return UpstreamCall(path=PATH, body=body, stream=request.stream)


def _render_assistant(message: Message) -> list[dict]:
    items: list[dict] = []
    texts: list[str] = []

    def flush():
        if texts:
            content = [{"type": "output_text", "text": text} for text in texts]
            items.append({"type": "message", "role": "assistant", "content": content})
            texts.clear()

    for part in message.parts:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ToolCall):
            flush()
            items.append(
                {
                    "type": "function_call",
                    "call_id": part.id,
                    "name": part.name,
                    "arguments": part.arguments or "{}",
                }
            )
    flush()
    return items


def _render_user(message: Message) -> list[dict]:
    items: list[dict] = []
    others = []
    for part in message.parts:
        if isinstance(part, ToolResult):
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": part.tool_call_id,
                    "output": _render_output(part),
                }
            )
        else:
            others.append(part)
    if others:  # an empty user turn says nothing
        if len(others) == 1 and isinstance(others[0], TextPart):
            content: str | list = others[0].text
        else:
            content = [_render_input(part) for part in others]
        items.append({"type": "message", "role": "user", "content": content})
    return items


def _render_output(result: ToolResult) -> str | list:
    prefix = "Error: " if result.is_error else ""
    if not any(isinstance(part, ImagePart) for part in result.content):
        return prefix + "\n\n".join(p.text for p in result.content if isinstance(p, TextPart))
    parts = [_render_input(part) for part in result.content]
    if prefix:
        parts.insert(0, {"type": "input_text", "text": prefix.strip()})
    return parts


def _render_input(part) -> dict:
    if isinstance(part, ImagePart):
        return {"type": "input_image", "image_url": image_url(part), "detail": "auto"}
    return {"type": "input_text", "text": part.text}


# --- Upstream side: response ---------------------------------------------------------------------


def parse_response(body) -> ChatResponse:
    """A ``response`` object from an upstream, in the internal form."""
    if not isinstance(body, dict):
        raise UpstreamFormatError("The upstream answer is not a JSON object.")
    if body.get("error") or body.get("status") == "failed":
        raise UpstreamFormatError(error_message(body.get("error") or "the response failed"))
    output = body.get("output")
    if not isinstance(output, list):
        raise UpstreamFormatError("The upstream response has no output list.")
    content: list = []
    for item in output:
        if not isinstance(item, dict):
            raise UpstreamFormatError("An upstream output item is not an object.")
        if item.get("type") == "message":
            for part in item.get("content") or []:
                text = _part_text(part)
                if text:
                    content.append(TextPart(text))
        elif item.get("type") == "function_call":
            content.append(_call_from_item(item))
    usage = body.get("usage")
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=content,
        stop_reason=_stop_reason(body, any(isinstance(p, ToolCall) for p in content)),
        usage=parse_usage(usage) if isinstance(usage, dict) else Usage(),
    )


def _part_text(part) -> str:
    if not isinstance(part, dict):
        return ""
    if part.get("type") == "refusal":
        return part.get("refusal") or ""
    if part.get("type") == "output_text":
        return part.get("text") or ""
    return ""


def _call_from_item(item: dict) -> ToolCall:
    name = item.get("name")
    call_id = item.get("call_id") or item.get("id")
    if not isinstance(name, str) or not isinstance(call_id, str):
        raise UpstreamFormatError("An upstream function call has no name or call_id.")
    arguments = item.get("arguments")
    return ToolCall(call_id, name, arguments if isinstance(arguments, str) and arguments else "{}")


def _stop_reason(response: dict, called_tools: bool) -> StopReason:
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details") or {}
        reason = details.get("reason") if isinstance(details, dict) else None
        return INCOMPLETE_REASONS.get(reason or "", "max_tokens")
    return "tool_use" if called_tools else "end_turn"


def parse_usage(usage: dict) -> Usage:
    """Responses usage (input tokens include cache reads and writes) in the internal form."""
    details = usage.get("input_tokens_details")
    return openai_usage(
        total_input=count(usage, "input_tokens"),
        cached=count(details, "cached_tokens"),
        written=count(details, "cache_write_tokens"),
        output=count(usage, "output_tokens"),
        reasoning=count(usage.get("output_tokens_details"), "reasoning_tokens"),
    )


class StreamParser:
    """Responses SSE events from an upstream to internal stream events.

    Text blocks are content parts (``content_part.added`` … ``content_part.done``), tool blocks
    are function_call items (``output_item.added`` … ``output_item.done``); blocks are keyed by
    output and content index. Events of other item types (reasoning, ...) are skipped. A stream
    that closes without ``response.completed``/``response.incomplete`` lost its usage: that is
    an error, not a normal end.
    """

    def __init__(self):
        self._started = False
        self._ended = False
        self._next_index = 0
        self._texts: dict[tuple[int, int], int] = {}  # (output, content index) -> block
        self._calls: dict[int, dict] = {}  # output index -> {"index", "arguments"}
        self._open: list[int] = []  # open block indexes, in order
        self._called_tools = False

    def feed(self, event: SSE) -> list[StreamEvent]:
        data = event.data.strip()
        if self._ended or not data or data == "[DONE]":
            return []
        try:
            payload = json.loads(data)
        except ValueError:
            raise UpstreamFormatError("An upstream stream event is not JSON.") from None
        if not isinstance(payload, dict):
            raise UpstreamFormatError("An upstream stream event is not a JSON object.")
        kind = payload.get("type") or event.event
        if kind == "error":
            raise UpstreamFormatError(error_message(payload))
        if kind == "response.failed":
            response = payload.get("response") or {}
            raise UpstreamFormatError(error_message(response.get("error") or "response failed"))
        out = self._begin(payload)
        output_index = payload.get("output_index", 0)
        content_index = payload.get("content_index", 0)
        if kind == "response.output_item.added":
            item = payload.get("item") or {}
            if item.get("type") == "function_call":
                out.extend(self._call_start(output_index, item))
        elif kind == "response.content_part.added":
            part = payload.get("part") or {}
            if part.get("type") in ("output_text", "refusal"):
                out.extend(self._text_start(output_index, content_index))
                out.extend(self._text(output_index, content_index, _part_text(part)))
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            out.extend(self._text(output_index, content_index, payload.get("delta") or ""))
        elif kind in ("response.output_text.done", "response.refusal.done"):
            if (output_index, content_index) not in self._texts:  # text only at the end
                text = payload.get("text") or payload.get("refusal") or ""
                out.extend(self._text(output_index, content_index, text))
        elif kind == "response.content_part.done":
            block = self._texts.get((output_index, content_index))
            if block is not None:
                out.extend(self._stop(block))
        elif kind == "response.function_call_arguments.delta":
            out.extend(self._arguments(output_index, payload.get("delta") or ""))
        elif kind == "response.function_call_arguments.done":
            out.extend(self._arguments_done(output_index, payload.get("arguments")))
        elif kind == "response.output_item.done":
            out.extend(self._item_done(output_index, payload.get("item") or {}))
        elif kind in ("response.completed", "response.incomplete"):
            out.extend(self._end(payload.get("response") or {}))
        return out

    def close(self) -> list[StreamEvent]:
        if self._ended:
            return []
        raise UpstreamFormatError("The upstream stream ended before the response completed.")

    def _begin(self, payload: dict) -> list[StreamEvent]:
        if self._started:
            return []
        self._started = True
        response = payload.get("response") if isinstance(payload.get("response"), dict) else {}
        return [
            MessageStart(id=str(response.get("id") or ""), model=str(response.get("model") or ""))
        ]

    def _new_block(self) -> int:
        index = self._next_index
        self._next_index += 1
        self._open.append(index)
        return index

    def _text_start(self, output_index: int, content_index: int) -> list[StreamEvent]:
        if (output_index, content_index) in self._texts:
            return []
        index = self._new_block()
        self._texts[(output_index, content_index)] = index
        return [TextStart(index)]

    def _text(self, output_index: int, content_index: int, text: str) -> list[StreamEvent]:
        if not text:
            return []
        out = self._text_start(output_index, content_index)
        block = self._texts[(output_index, content_index)]
        if block in self._open:
            out.append(TextDelta(block, text))
        return out

    def _call_start(self, output_index: int, item: dict) -> list[StreamEvent]:
        if output_index in self._calls:
            return []
        call = _call_from_item({**item, "arguments": item.get("arguments") or ""})
        index = self._new_block()
        self._calls[output_index] = {"index": index, "arguments": ""}
        self._called_tools = True
        out: list[StreamEvent] = [ToolCallStart(index, call.id, call.name)]
        if item.get("arguments"):
            out.extend(self._arguments(output_index, item["arguments"]))
        return out

    def _arguments(self, output_index: int, fragment: str) -> list[StreamEvent]:
        call = self._calls.get(output_index)
        if call is None or not fragment or call["index"] not in self._open:
            return []
        call["arguments"] += fragment
        return [ToolCallDelta(call["index"], fragment)]

    def _arguments_done(self, output_index: int, arguments) -> list[StreamEvent]:
        """Send what the deltas did not, when an upstream gives the arguments only whole."""
        call = self._calls.get(output_index)
        if call is None or not isinstance(arguments, str):
            return []
        sent = call["arguments"]
        if len(arguments) > len(sent) and arguments.startswith(sent):
            return self._arguments(output_index, arguments[len(sent) :])
        return []

    def _item_done(self, output_index: int, item: dict) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if item.get("type") == "function_call":
            out.extend(self._call_start(output_index, item))
            out.extend(self._arguments_done(output_index, item.get("arguments")))
            out.extend(self._stop(self._calls[output_index]["index"]))
        elif item.get("type") == "message":
            for content_index, part in enumerate(item.get("content") or []):
                if (output_index, content_index) not in self._texts:
                    out.extend(self._text(output_index, content_index, _part_text(part)))
                block = self._texts.get((output_index, content_index))
                if block is not None:
                    out.extend(self._stop(block))
        return out

    def _stop(self, index: int) -> list[StreamEvent]:
        if index not in self._open:
            return []
        self._open.remove(index)
        return [BlockStop(index)]

    def _end(self, response: dict) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for index in list(self._open):
            out.extend(self._stop(index))
        self._ended = True
        usage = response.get("usage")
        out.append(
            MessageEnd(
                stop_reason=_stop_reason(response, self._called_tools),
                usage=parse_usage(usage) if isinstance(usage, dict) else Usage(),
            )
        )
        return out
