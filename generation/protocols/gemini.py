"""Google Gemini ``generateContent`` / ``streamGenerateContent?alt=sse``: the codec for both
sides of the gateway.

Caller side: a GenerateContentRequest (the model comes from the URL) becomes a ChatRequest; a
ChatResponse or a stream of internal events becomes GenerateContentResponse JSON or its SSE
chunks. Upstream side: the reverse, against ``/v1beta/models/{model}:...``.

Decisions worth knowing:

- Keys are read in camelCase or snake_case, as the official API accepts both; error params use
  the spelling the caller sent. Messages read like Google's (``* GenerateContentRequest...``).
- Whether a call streams is decided by the route, not the body: the view sets
  ``ChatRequest.stream`` after parse_request for ``:streamGenerateContent``.
- Function calls without an id (older Gemini) get ``call_<content>_<part>`` ids; a
  functionResponse without an id answers the oldest unanswered call of the same name.
- A tool result goes out as ``functionResponse.response``: the result text itself when it is a
  JSON object, else ``{"result": text}`` (``{"error": text}`` when it is an error); coming in,
  those two wrappers are unwrapped again and any other object becomes its JSON text.
- Thought parts (``"thought": true``) are dropped. Function calls sent upstream carry the
  documented placeholder thought signature, since the internal form does not keep Gemini's
  signatures and Gemini 3 refuses function calls in the history without one.
- Usage (SPEC §5): ``promptTokenCount`` includes ``cachedContentTokenCount``; output is
  ``candidatesTokenCount + thoughtsTokenCount``.
"""

import contextlib
import json
import mimetypes
import re
import uuid

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

# The value Google documents for history whose function calls have no real thought signature.
THOUGHT_SIGNATURE_PLACEHOLDER = "skip_thought_signature_validator"

_FINISH_FROM_GEMINI = {
    "STOP": "end_turn",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}
_FINISH_TO_GEMINI = {
    "end_turn": "STOP",
    "stop_sequence": "STOP",
    "tool_use": "STOP",
    "max_tokens": "MAX_TOKENS",
    "content_filter": "SAFETY",
}
_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto"}
_MODES_TO_GEMINI = {"auto": "AUTO", "required": "ANY", "tool": "ANY", "none": "NONE"}
_PROTO_TYPES = {str: "TYPE_STRING", int: "TYPE_INT32", float: "TYPE_FLOAT", bool: "TYPE_BOOL"}
_PART_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
# Fields that qualify a part's data rather than being data.
_PART_METADATA = ("thought", "thought_signature", "video_metadata", "part_metadata")
_UNSUPPORTED_PARTS = ("executableCode", "codeExecutionResult", "toolCall", "toolResponse")


# --- Validation helpers ------------------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda match: "_" + match.group(1).lower(), name)


def _key(obj: dict, name: str) -> str | None:
    """The spelling of ``name`` (camelCase) present in ``obj``: camel or snake, else None."""
    if name in obj:
        return name
    snake = _snake(name)
    return snake if snake in obj else None


def _get(obj: dict, name: str):
    key = _key(obj, name)
    return obj[key] if key else None


def _error(param: str, text: str) -> ProtocolError:
    return ProtocolError(f"* GenerateContentRequest.{param}: {text}", param)


class _Fields(Fields):
    """Google's wording: ``* GenerateContentRequest.contents: contents is not specified``, and
    type errors that name the field's proto type."""

    def missing(self, param: str, key: str) -> ProtocolError:
        return _error(param, f"{key} is not specified")

    def wrong_type(self, param: str, kind: type, value) -> ProtocolError:
        if kind in _PROTO_TYPES:
            message = f"Invalid value at '{param}' ({_PROTO_TYPES[kind]}), {json.dumps(value)}"
        else:
            expected = "a list" if kind is list else "an object"
            message = f"Invalid value at '{param}': expected {expected}."
        return ProtocolError(message, param)

    def out_of_range(self, param: str, key: str, value, minimum, maximum) -> ProtocolError:
        if maximum is None:
            return _error(param, f"{key} must be at least {minimum}, got {value}")
        return _error(param, f"{key} must be between {minimum} and {maximum}, got {value}")


_FIELDS = _Fields()


def _check(value, kind, param: str):
    return _FIELDS.check(value, kind, param)


def _field(obj: dict, name: str, kind, prefix: str = "", *, required=False, low=None, high=None):
    """``obj[name]`` in either spelling, type- and range-checked; None when absent."""
    key = _key(obj, name) or name
    param = join_param(prefix, key)
    return _FIELDS.read(obj, key, kind, param, required=required, minimum=low, maximum=high)


# --- Caller side: request ----------------------------------------------------------------------


def parse_request(body: dict, *, model: str | None = None) -> ChatRequest:
    """Validate a GenerateContentRequest; ``model`` is the one named in the URL."""
    if not isinstance(body, dict):
        raise ProtocolError("Invalid JSON payload received. Expected an object.", None)
    model = (model or "").removeprefix("models/")
    if not model:
        raise ProtocolError("* GenerateContentRequest.model: model is not specified", "model")
    config = _field(body, "generationConfig", dict) or {}
    config_prefix = _key(body, "generationConfig") or "generationConfig"
    max_tokens = _field(config, "maxOutputTokens", int, config_prefix, low=1, high=MAX_TOKENS_LIMIT)
    temperature = _field(config, "temperature", float, config_prefix, low=0, high=2)
    top_p = _field(config, "topP", float, config_prefix, low=0, high=1)
    _field(config, "topK", float, config_prefix, low=0)  # accepted, not forwarded
    candidates = _field(config, "candidateCount", int, config_prefix)
    if candidates is not None and candidates != 1:
        param = join_param(config_prefix, _key(config, "candidateCount") or "candidateCount")
        raise _error(param, "only one candidate is supported")
    stops = _field(config, "stopSequences", list, config_prefix) or []
    stop_param = join_param(config_prefix, _key(config, "stopSequences") or "stopSequences")
    stop = [_check(value, str, f"{stop_param}[{i}]") for i, value in enumerate(stops)]
    _field(config, "thinkingConfig", dict, config_prefix)  # accepted, not forwarded

    tools = _parse_tools(body)
    tool_choice, tool_choice_name = _parse_tool_config(body)
    return ChatRequest(
        model=model,
        messages=_parse_contents(body),
        system=_parse_system(body),
        tools=tools,
        tool_choice=tool_choice,
        tool_choice_name=tool_choice_name,
        max_tokens=max_tokens,
        temperature=float(temperature) if temperature is not None else None,
        top_p=float(top_p) if top_p is not None else None,
        stop=stop,
    )


def _parse_system(body: dict) -> str:
    key = _key(body, "systemInstruction")
    if key is None or body[key] is None:
        return ""
    system = body[key]
    if isinstance(system, str):  # what the SDKs accept; the REST API wants a Content
        return system
    _check(system, dict, key)
    parts = _field(system, "parts", list, key) or []
    texts = []
    for i, part in enumerate(parts):
        param = f"{key}.parts[{i}]"
        _check(part, dict, param)
        text = _field(part, "text", str, param)
        if text is None:
            raise _error(param, "system instructions can only contain text")
        texts.append(text)
    return "\n\n".join(text for text in texts if text)


def _parse_contents(body: dict) -> list[Message]:
    contents = _field(body, "contents", list, required=True)
    if not contents:
        raise _error("contents", "contents is not specified")
    messages: list[Message] = []
    pending: list[ToolCall] = []  # calls not yet answered, oldest first
    for i, content in enumerate(contents):
        param = f"contents[{i}]"
        _check(content, dict, param)
        role = _field(content, "role", str, param) or "user"
        if role == "function":  # older clients send function responses in this role
            role = "user"
        if role not in ("user", "model"):
            raise ProtocolError("Please use a valid role: user, model.", f"{param}.role")
        parts = _field(content, "parts", list, param, required=True)
        if not parts:
            raise _error(f"{param}.parts", "contents.parts must not be empty.")
        internal_role = "user" if role == "user" else "assistant"
        message = Message(role=internal_role)
        for j, part in enumerate(parts):
            parsed = _parse_part(part, role, f"{param}.parts[{j}]", pending, f"call_{i}_{j}")
            if parsed is not None:
                message.parts.append(parsed)
        messages.append(message)
    return messages


def _parse_part(part, role: str, param: str, pending: list[ToolCall], fallback_id: str):
    _check(part, dict, param)
    present = [name for name in _PART_FIELDS if _key(part, name) is not None]
    for name in _UNSUPPORTED_PARTS:
        if _key(part, name) is not None:
            raise _error(f"{param}.{_key(part, name)}", f"{name} parts are not supported")
    if not present and all(_snake(key) in _PART_METADATA for key in part):
        return None  # a bare thought signature or thought marker: nothing to translate
    if len(present) != 1:
        raise _error(param, "a part must hold exactly one of " + ", ".join(_PART_FIELDS))
    name = present[0]
    key = _key(part, name)
    data_param = f"{param}.{key}"
    if name == "text":
        text = _check(part[key], str, data_param)
        if part.get("thought"):  # the model's thoughts, sent back in the history
            return None
        return TextPart(text) if text else None
    if role == "model" and name in ("inlineData", "fileData", "functionResponse"):
        raise _error(data_param, f"{key} is only allowed in user contents")
    if role == "user" and name == "functionCall":
        raise _error(data_param, f"{key} is only allowed in model contents")
    value = _check(part[key], dict, data_param)
    if name == "inlineData":
        return _parse_inline_data(value, data_param)
    if name == "fileData":
        mime_type = _field(value, "mimeType", str, data_param) or ""
        uri = _field(value, "fileUri", str, data_param, required=True)
        if mime_type and not mime_type.startswith("image/"):
            raise _error(
                join_param(data_param, _key(value, "mimeType")),
                f"unsupported MIME type {mime_type}",
            )
        if not uri.startswith(("https://", "http://")):
            raise _error(
                join_param(data_param, _key(value, "fileUri")),
                "only http(s) file URIs are supported",
            )
        return ImagePart(media_type=mime_type, url=uri)
    if name == "functionCall":
        call_name = _field(value, "name", str, data_param, required=True)
        args = _field(value, "args", dict, data_param) or {}
        call_id = _field(value, "id", str, data_param) or fallback_id
        call = ToolCall(id=call_id, name=call_name, arguments=json.dumps(args))
        pending.append(call)
        return call
    # functionResponse
    call_name = _field(value, "name", str, data_param, required=True)
    response = _field(value, "response", dict, data_param) or {}
    call_id = _field(value, "id", str, data_param)
    match = next(
        (call for call in pending if call.id == call_id)
        if call_id
        else (call for call in pending if call.name == call_name),
        None,
    )
    if match is not None:
        pending.remove(match)
        call_id = match.id
    text, is_error = _result_text(response)
    return ToolResult(
        tool_call_id=call_id or fallback_id,
        content=[TextPart(text)] if text else [],
        name=call_name,
        is_error=is_error,
    )


def _parse_inline_data(value: dict, param: str) -> ImagePart:
    mime_type = _field(value, "mimeType", str, param, required=True)
    data = _field(value, "data", str, param, required=True)
    data_param = join_param(param, _key(value, "data"))
    if not mime_type.startswith("image/"):
        raise _error(
            join_param(param, _key(value, "mimeType")),
            f"unsupported MIME type {mime_type}; only images are accepted",
        )
    # Google accepts URL-safe base64 as well; the internal form holds the standard alphabet.
    standard = data.replace("-", "+").replace("_", "/")
    standard += "=" * (-len(standard) % 4)
    try:
        return image_from_base64(mime_type, standard, data_param)
    except ProtocolError:
        preview = data[:32]
        raise ProtocolError(
            f"Invalid value at '{data_param}' (TYPE_BYTES), Base64 decoding failed for "
            f'"{preview}"',
            data_param,
        ) from None


def _result_text(response: dict) -> tuple[str, bool]:
    """functionResponse.response to the result text. A lone ``result`` (this codec's wrapper),
    ``output`` or ``error`` (the keys Google documents) holding text is unwrapped."""
    if not response:
        return "", False
    if len(response) == 1:
        ((key, value),) = response.items()
        if key in ("result", "output", "error") and isinstance(value, str):
            return value, key == "error"
    return json.dumps(response), False


def _parse_tools(body: dict) -> list[Tool]:
    key = _key(body, "tools")
    raw = _field(body, "tools", list) or []
    tools = []
    for i, item in enumerate(raw):
        param = f"{key}[{i}]"
        _check(item, dict, param)
        others = [name for name in item if _snake(name) != "function_declarations"]
        if others:
            raise _error(param, f"tool '{others[0]}' is not supported; only functionDeclarations")
        declarations = _field(item, "functionDeclarations", list, param) or []
        declarations_param = join_param(param, _key(item, "functionDeclarations") or "")
        for j, declaration in enumerate(declarations):
            tools.append(_parse_declaration(declaration, f"{declarations_param}[{j}]"))
    return tools


def _parse_declaration(declaration, param: str) -> Tool:
    _check(declaration, dict, param)
    name = _field(declaration, "name", str, param, required=True)
    if not name:
        raise _error(join_param(param, "name"), "name must not be empty")
    description = _field(declaration, "description", str, param) or ""
    schema = _field(declaration, "parametersJsonSchema", dict, param)
    if schema is None:
        schema = _field(declaration, "parameters", dict, param)
        schema = _lowercase_types(schema) if schema is not None else None
    return Tool(name=name, description=description, parameters=schema or Tool(name).parameters)


def _lowercase_types(schema):
    """Gemini's OpenAPI schemas may say ``"type": "OBJECT"``; JSON Schema says ``object``."""
    if isinstance(schema, list):
        return [_lowercase_types(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            result[key] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            result[key] = {name: _lowercase_types(sub) for name, sub in value.items()}
        else:
            result[key] = _lowercase_types(value)
    return result


def _parse_tool_config(body: dict) -> tuple:
    config = _field(body, "toolConfig", dict)
    if not config:
        return None, ""
    prefix = _key(body, "toolConfig")
    calling = _field(config, "functionCallingConfig", dict, prefix)
    if not calling:
        return None, ""
    prefix = join_param(prefix, _key(config, "functionCallingConfig"))
    mode = _field(calling, "mode", str, prefix)
    names_key = _key(calling, "allowedFunctionNames")
    names = _field(calling, "allowedFunctionNames", list, prefix) or []
    names = [_check(name, str, f"{prefix}.{names_key}[{i}]") for i, name in enumerate(names)]
    if mode is None or mode.upper() == "MODE_UNSPECIFIED":
        return None, ""
    if mode.upper() not in _MODES:
        raise _error(f"{prefix}.mode", f"invalid mode {mode!r}; expected AUTO, ANY or NONE")
    choice = _MODES[mode.upper()]
    if choice == "required" and len(names) == 1:
        return "tool", names[0]
    return choice, ""


# --- Caller side: response ---------------------------------------------------------------------


def _usage_metadata(usage: Usage) -> dict:
    prompt = usage.total_input
    thoughts = usage.reasoning_tokens
    candidates = max(usage.output_tokens - thoughts, 0)
    metadata = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
    }
    if usage.cache_read_tokens:
        metadata["cachedContentTokenCount"] = usage.cache_read_tokens
    if thoughts:
        metadata["thoughtsTokenCount"] = thoughts
    return metadata


def _function_call(call_id: str, name: str, arguments: str) -> dict:
    call = {"name": name, "args": arguments_object(arguments)}
    if call_id:
        call["id"] = call_id
    return {"functionCall": call}


def render_response(response: ChatResponse, request: ChatRequest) -> dict:
    parts = [
        {"text": part.text}
        if isinstance(part, TextPart)
        else _function_call(part.id, part.name, part.arguments)
        for part in response.content
    ]
    return {
        "candidates": [
            {
                "content": {"parts": parts, "role": "model"},
                "finishReason": _FINISH_TO_GEMINI[response.stop_reason],
                "index": 0,
            }
        ],
        "usageMetadata": _usage_metadata(response.usage),
        "modelVersion": request.model or response.model,
        "responseId": response.id,
    }


class StreamRenderer:
    """Internal events to ``streamGenerateContent?alt=sse`` chunks: one chunk per text delta,
    a function call whole when its block stops (Gemini never streams partial arguments), and a
    last chunk with finishReason and usageMetadata. No ``[DONE]``."""

    def __init__(self, request: ChatRequest, response_id: str, created: int = 0):
        self.model = request.model
        self.response_id = response_id
        self.calls: dict[int, list] = {}  # open tool blocks: index -> [id, name, arguments]
        self.start_usage = Usage()
        self.done = False

    def _chunk(self, parts: list[dict], **candidate) -> bytes:
        chunk = {
            "candidates": [{"content": {"parts": parts, "role": "model"}, **candidate, "index": 0}],
            "modelVersion": self.model,
            "responseId": self.response_id,
        }
        return sse_frame(chunk)

    def feed(self, event: StreamEvent) -> list[bytes]:
        if self.done:
            return []
        if isinstance(event, MessageStart):
            self.start_usage = event.usage
        elif isinstance(event, TextDelta) and event.text:
            return [self._chunk([{"text": event.text}])]
        elif isinstance(event, ToolCallStart):
            self.calls[event.index] = [event.id, event.name, ""]
        elif isinstance(event, ToolCallDelta) and event.index in self.calls:
            self.calls[event.index][2] += event.arguments
        elif isinstance(event, BlockStop) and event.index in self.calls:
            return [self._chunk([_function_call(*self.calls.pop(event.index))])]
        elif isinstance(event, MessageEnd):
            return self._end(event)
        return []

    def finish(self) -> list[bytes]:
        """End a stream whose upstream stopped without a MessageEnd: close it cleanly."""
        return [] if self.done else self._end(MessageEnd())

    def fail(self, message: str) -> list[bytes]:
        self.done = True
        return [sse_frame({"error": {"code": 500, "message": message, "status": "INTERNAL"}})]

    def _end(self, event: MessageEnd) -> list[bytes]:
        self.done = True
        frames = [self._chunk([_function_call(*call)]) for call in self.calls.values()]
        self.calls.clear()
        usage = event.usage
        if not usage.total_input and self.start_usage.total_input:
            usage = Usage(
                input_tokens=self.start_usage.input_tokens,
                cache_read_tokens=self.start_usage.cache_read_tokens,
                cache_write_tokens=self.start_usage.cache_write_tokens,
                output_tokens=usage.output_tokens,
                reasoning_tokens=usage.reasoning_tokens,
            )
        last = {
            "candidates": [
                {
                    "content": {"parts": [{"text": ""}], "role": "model"},
                    "finishReason": _FINISH_TO_GEMINI[event.stop_reason],
                    "index": 0,
                }
            ],
            "usageMetadata": _usage_metadata(usage),
            "modelVersion": self.model,
            "responseId": self.response_id,
        }
        frames.append(sse_frame(last))
        return frames


# --- Upstream side -----------------------------------------------------------------------------


def _image_part(part: ImagePart) -> dict:
    if part.url:
        media_type = part.media_type or mimetypes.guess_type(part.url)[0] or "image/jpeg"
        return {"fileData": {"mimeType": media_type, "fileUri": part.url}}
    return {"inlineData": {"mimeType": part.media_type, "data": part.data}}


def _function_response(part: ToolResult, name: str) -> dict:
    text = "".join(item.text for item in part.content if isinstance(item, TextPart))
    response = None
    if not part.is_error:
        with contextlib.suppress(ValueError):
            response = json.loads(text)
    if not isinstance(response, dict):
        response = {"error": text} if part.is_error else ({"result": text} if text else {})
    result = {"name": name, "response": response}
    if part.tool_call_id:
        result["id"] = part.tool_call_id
    return {"functionResponse": result}


def _contents(messages: list[Message]) -> list[dict]:
    """Consecutive messages of one role are merged: Gemini wants all the function responses to
    a model turn's calls in the one user turn that follows it."""
    names: dict[str, str] = {}  # call id -> function name, for responses without a name
    contents: list[dict] = []
    for message in messages:
        parts: list[dict] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                if part.text:
                    parts.append({"text": part.text})
            elif isinstance(part, ImagePart):
                parts.append(_image_part(part))
            elif isinstance(part, ToolCall):
                names[part.id] = part.name
                call = _function_call(part.id, part.name, part.arguments)
                call["thoughtSignature"] = THOUGHT_SIGNATURE_PLACEHOLDER
                parts.append(call)
            else:
                name = part.name or names.get(part.tool_call_id, "")
                parts.append(_function_response(part, name))
                # Images in a tool result travel beside the function response.
                parts += [_image_part(item) for item in part.content if isinstance(item, ImagePart)]
        if not parts:
            continue
        role = "user" if message.role == "user" else "model"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"] += parts
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def upstream_request(request: ChatRequest, upstream_model: str) -> UpstreamCall:
    body: dict = {"contents": _contents(request.messages)}
    if request.system:
        body["systemInstruction"] = {"parts": [{"text": request.system}]}
    if request.tools:
        declarations = []
        for tool in request.tools:
            declaration = {"name": tool.name, "parametersJsonSchema": tool.parameters}
            if tool.description:
                declaration["description"] = tool.description
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
        if request.tool_choice:
            calling = {"mode": _MODES_TO_GEMINI[request.tool_choice]}
            if request.tool_choice == "tool":
                calling["allowedFunctionNames"] = [request.tool_choice_name]
            body["toolConfig"] = {"functionCallingConfig": calling}
    config: dict = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if config:
        body["generationConfig"] = config
    model = upstream_model.removeprefix("models/")
    if request.stream:
        return UpstreamCall(
            path=f"/v1beta/models/{model}:streamGenerateContent",
            body=body,
            stream=True,
            params={"alt": "sse"},
        )
    return UpstreamCall(path=f"/v1beta/models/{model}:generateContent", body=body)


def _upstream_error(body: dict) -> UpstreamFormatError:
    error = body["error"]
    if isinstance(error, dict):
        status = error.get("status") or error.get("code") or "error"
        return UpstreamFormatError(f"Gemini {status}: {error.get('message', '')}".strip())
    return UpstreamFormatError(f"Gemini error: {error}")


def _read_usage(raw) -> Usage:
    if not isinstance(raw, dict):
        return Usage()

    def count(name: str) -> int:
        value = _get(raw, name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    cached = count("cachedContentTokenCount")
    thoughts = count("thoughtsTokenCount")
    return Usage(
        input_tokens=max(count("promptTokenCount") - cached, 0),
        output_tokens=count("candidatesTokenCount") + thoughts,
        cache_read_tokens=cached,
        reasoning_tokens=thoughts,
    )


def _candidate(body: dict) -> dict:
    candidates = body.get("candidates")
    if candidates is None:
        return {}
    if not isinstance(candidates, list):
        raise UpstreamFormatError("Gemini candidates is not a list.")
    if not candidates:
        return {}
    if not isinstance(candidates[0], dict):
        raise UpstreamFormatError("A Gemini candidate is not an object.")
    return candidates[0]


def _candidate_parts(candidate: dict) -> list[dict]:
    content = candidate.get("content")
    if not isinstance(content, dict):
        return []
    parts = content.get("parts") or []
    if not isinstance(parts, list):
        raise UpstreamFormatError("Gemini content parts is not a list.")
    return [part for part in parts if isinstance(part, dict)]


def _finish(candidate: dict, body: dict, called: bool) -> str:
    reason = _get(candidate, "finishReason")
    if not reason:
        feedback = _get(body, "promptFeedback")
        if isinstance(feedback, dict) and _get(feedback, "blockReason"):
            return "content_filter"  # the prompt itself was blocked: no candidates at all
        return "tool_use" if called else "end_turn"
    stop = _FINISH_FROM_GEMINI.get(reason, "end_turn")
    return "tool_use" if called and stop == "end_turn" else stop


def _call_id(call: dict, response_id: str, n: int) -> str:
    if call.get("id"):
        return str(call["id"])
    return f"call_{response_id or uuid.uuid4().hex}_{n}"


def parse_response(body: dict) -> ChatResponse:
    if not isinstance(body, dict):
        raise UpstreamFormatError("The Gemini answer is not a JSON object.")
    if "error" in body:
        raise _upstream_error(body)
    if "candidates" not in body and _key(body, "promptFeedback") is None:
        raise UpstreamFormatError("The Gemini answer has no candidates.")
    response_id = str(_get(body, "responseId") or "")
    candidate = _candidate(body)
    content: list[TextPart | ToolCall] = []
    for part in _candidate_parts(candidate):
        call = _get(part, "functionCall")
        if isinstance(call, dict):
            calls = sum(isinstance(item, ToolCall) for item in content)
            args = call.get("args") if isinstance(call.get("args"), dict) else {}
            content.append(
                ToolCall(
                    id=_call_id(call, response_id, calls),
                    name=str(call.get("name", "")),
                    arguments=json.dumps(args),
                )
            )
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            if content and isinstance(content[-1], TextPart):
                content[-1].text += part["text"]
            elif part["text"]:
                content.append(TextPart(part["text"]))
    called = any(isinstance(part, ToolCall) for part in content)
    return ChatResponse(
        id=response_id,
        model=str(_get(body, "modelVersion") or ""),
        content=content,
        stop_reason=_finish(candidate, body, called),
        usage=_read_usage(_get(body, "usageMetadata")),
    )


class StreamParser:
    """``streamGenerateContent?alt=sse`` chunks to internal events. Text parts become deltas of
    one text block; each functionCall part (they arrive whole) becomes a complete tool block.
    Gemini has no end marker, so MessageEnd comes from close(), with the last finishReason and
    usageMetadata seen."""

    def __init__(self):
        self.started = False
        self.response_id = ""
        self.next_index = 0
        self.open_text: int | None = None
        self.calls = 0
        self.finish_reason = ""
        self.blocked = False
        self.usage = Usage()
        self.ended = False

    def feed(self, event: SSE) -> list[StreamEvent]:
        if event.data.strip() == "[DONE]":  # not Gemini's, but harmless from look-alikes
            return []
        try:
            chunk = event.json()
        except ValueError:
            raise UpstreamFormatError("A Gemini stream chunk is not JSON.") from None
        if not isinstance(chunk, dict):
            raise UpstreamFormatError("A Gemini stream chunk is not a JSON object.")
        if "error" in chunk:
            raise _upstream_error(chunk)
        if self.ended:
            return []
        events: list[StreamEvent] = []
        if not self.started:
            self.started = True
            self.response_id = str(_get(chunk, "responseId") or uuid.uuid4().hex)
            model = str(_get(chunk, "modelVersion") or "")
            usage = _read_usage(_get(chunk, "usageMetadata"))
            start_usage = Usage(
                input_tokens=usage.input_tokens, cache_read_tokens=usage.cache_read_tokens
            )
            events.append(MessageStart(id=self.response_id, model=model, usage=start_usage))
        candidate = _candidate(chunk)
        for part in _candidate_parts(candidate):
            call = _get(part, "functionCall")
            if isinstance(call, dict):
                events += self._close_text()
                index = self.next_index
                self.next_index += 1
                args = call.get("args") if isinstance(call.get("args"), dict) else {}
                call_id = _call_id(call, self.response_id, self.calls)
                self.calls += 1
                events.append(ToolCallStart(index, call_id, str(call.get("name", ""))))
                events.append(ToolCallDelta(index, json.dumps(args)))
                events.append(BlockStop(index))
            elif isinstance(part.get("text"), str) and part["text"] and not part.get("thought"):
                if self.open_text is None:
                    self.open_text = self.next_index
                    self.next_index += 1
                    events.append(TextStart(self.open_text))
                events.append(TextDelta(self.open_text, part["text"]))
        if _get(candidate, "finishReason"):
            self.finish_reason = _get(candidate, "finishReason")
        feedback = _get(chunk, "promptFeedback")
        if isinstance(feedback, dict) and _get(feedback, "blockReason"):
            self.blocked = True
        if _get(chunk, "usageMetadata") is not None:
            self.usage = _read_usage(_get(chunk, "usageMetadata"))
        return events

    def close(self) -> list[StreamEvent]:
        if self.ended:
            return []
        if not self.started:
            raise UpstreamFormatError("The Gemini stream ended without a chunk.")
        self.ended = True
        events = self._close_text()
        if self.finish_reason:
            stop = _FINISH_FROM_GEMINI.get(self.finish_reason, "end_turn")
        else:
            stop = "content_filter" if self.blocked else "end_turn"
        if self.calls and stop == "end_turn":
            stop = "tool_use"
        events.append(MessageEnd(stop_reason=stop, usage=self.usage))
        return events

    def _close_text(self) -> list[StreamEvent]:
        if self.open_text is None:
            return []
        index, self.open_text = self.open_text, None
        return [BlockStop(index)]
