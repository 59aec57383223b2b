"""The helpers the codecs share, so that no codec imports another.

Reading a field is written once (Fields); each codec words its errors as its protocol does, in
a small subclass of its own. Below the neutral helpers are those of the two OpenAI protocols
(Chat Completions and Responses), which share their wording, tools and ids.
"""

import base64
import binascii
import json
import re

from generation.protocols.base import ProtocolError, UpstreamFormatError
from generation.protocols.internal import ImagePart, Tool, Usage

# Far above any model's real output limit: the model's own limit is the gateway's business;
# this only refuses values no model could honour before they reach billing holds.
MAX_TOKENS_LIMIT = 1_000_000


class Fields:
    """Reads and checks the fields of a caller's JSON. The checks are the same in every
    protocol; a codec's subclass says how its protocol words the three ways a field is wrong.
    ``param`` is the field's path as the error names it, ``key`` its name in its object."""

    def missing(self, param: str, key: str) -> ProtocolError:
        raise NotImplementedError

    def wrong_type(self, param: str, kind: type, value) -> ProtocolError:
        raise NotImplementedError

    def out_of_range(self, param: str, key: str, value, minimum, maximum) -> ProtocolError:
        raise NotImplementedError

    def check(self, value, kind: type, param: str):
        """``value`` if it is a ``kind`` as JSON means it (a float field takes integers, and no
        number field takes a boolean), else the protocol's type error."""
        numeric = kind in (int, float)
        allowed = (int, float) if kind is float else kind
        if not isinstance(value, allowed) or (numeric and isinstance(value, bool)):
            raise self.wrong_type(param, kind, value)
        return value

    def read(
        self,
        obj: dict,
        key: str,
        kind: type,
        param: str,
        *,
        required=False,
        minimum=None,
        maximum=None,
    ):
        """``obj[key]`` checked for type and range; None when absent or null and not required."""
        value = obj.get(key)
        if value is None:
            if required:
                raise self.missing(param, key)
            return None
        self.check(value, kind, param)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self.out_of_range(param, key, value, minimum, maximum)
        return value


def join_param(prefix: str, key: str) -> str:
    """A field's dotted path under ``prefix`` (the top level when it is empty)."""
    return f"{prefix}.{key}" if prefix else key


def image_from_data_url(url: str, param: str) -> ImagePart:
    """An ImagePart from a ``data:<type>;base64,<data>`` URL or an http(s) URL."""
    if url.startswith(("https://", "http://")):
        return ImagePart(url=url)
    if not url.startswith("data:") or ";base64," not in url:
        raise ProtocolError("Images must be an http(s) URL or a base64 data URL.", param)
    media_type, data = url[5:].split(";base64,", 1)
    return image_from_base64(media_type, data, param)


def image_from_base64(media_type: str, data: str, param: str) -> ImagePart:
    """An ImagePart from base64 text, refusing what is not valid base64 or not an image type."""
    if not media_type.startswith("image/"):
        raise ProtocolError(f"Unsupported image type {media_type!r}.", param)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("The image data is not valid base64.", param) from None
    return ImagePart(media_type=media_type, data=data)


def arguments_object(arguments: str) -> dict:
    """A tool call's JSON arguments as the object Anthropic and Gemini want. Other protocols'
    models can produce text that is not a JSON object; it is kept rather than lost."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


# --- The two OpenAI protocols ------------------------------------------------------------------

TOOL_CHOICES = ["none", "auto", "required"]
_EXPECTED = {str: "a string", dict: "an object", list: "an array", bool: "a boolean"}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# In order: a boolean is also an int.
_TYPE_NAMES = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a decimal"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


class _OpenAIParams(Fields):
    """OpenAI's wording for a top-level parameter: ``Invalid type for 'top_p'.``"""

    def missing(self, param: str, key: str) -> ProtocolError:
        return missing(param)

    def wrong_type(self, param: str, kind: type, value) -> ProtocolError:
        return ProtocolError(f"Invalid type for '{param}'.", param)

    def out_of_range(self, param: str, key: str, value, minimum, maximum) -> ProtocolError:
        if minimum is not None and value < minimum:
            return ProtocolError(f"'{param}' must be at least {minimum}.", param)
        return ProtocolError(f"'{param}' must be at most {maximum}.", param)


class _OpenAIFields(_OpenAIParams):
    """OpenAI's wording inside the request: what was expected and what came instead."""

    def wrong_type(self, param: str, kind: type, value) -> ProtocolError:
        return invalid_type(param, _EXPECTED.get(kind, kind.__name__), value)


_PARAMS = _OpenAIParams()
_FIELDS = _OpenAIFields()


def require(body: dict, name: str, kind):
    """The top-level parameter ``body[name]`` if present and of ``kind``, else ProtocolError."""
    return _PARAMS.read(body, name, kind, name, required=True)


def optional(body: dict, name: str, kind, *, minimum=None, maximum=None):
    """The top-level parameter ``body[name]`` if present (type- and range-checked), else None."""
    return _PARAMS.read(body, name, kind, name, minimum=minimum, maximum=maximum)


def field(obj: dict, key: str, kind: type, param: str, *, required: bool = False):
    """``obj[key]`` checked against ``kind``; None when absent and not required."""
    return _FIELDS.read(obj, key, kind, param, required=required)


def _type_name(value) -> str:
    if value is None:
        return "null"
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)), "an unknown value")


def invalid_type(param: str, expected: str, value) -> ProtocolError:
    return ProtocolError(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param,
    )


def missing(param: str) -> ProtocolError:
    return ProtocolError(f"Missing required parameter: '{param}'.", param)


def empty_array(param: str) -> ProtocolError:
    return ProtocolError(
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead.",
        param,
    )


def invalid_value(param: str, value, supported: list[str]) -> ProtocolError:
    quoted = [f"'{item}'" for item in supported]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    return ProtocolError(f"Invalid value: '{value}'. Supported values are: {listed}.", param)


def check_tool_type(spec: dict, path: str) -> None:
    kind = spec.get("type")
    if kind is None:
        raise missing(f"{path}.type")
    if kind != "function":
        raise ProtocolError(
            f"Unknown tool type {kind!r} in '{path}': only 'function' tools are supported; "
            "built-in tools (web_search, file_search, code_interpreter, ...) are not available "
            "through this gateway.",
            f"{path}.type",
        )


def parse_function(spec: dict, path: str) -> Tool:
    """A function definition: ``name``, ``description``, ``parameters`` (JSON Schema)."""
    name = field(spec, "name", str, f"{path}.name", required=True)
    if not _TOOL_NAME.match(name):
        raise ProtocolError(
            f"Invalid '{path}.name': '{name}' must be 1 to 64 letters, digits, underscores "
            "or dashes.",
            f"{path}.name",
        )
    parameters = field(spec, "parameters", dict, f"{path}.parameters")
    return Tool(
        name=name,
        description=field(spec, "description", str, f"{path}.description") or "",
        parameters=parameters if parameters is not None else Tool(name).parameters,
    )


def render_function(tool: Tool) -> dict:
    rendered: dict = {"name": tool.name}
    if tool.description:
        rendered["description"] = tool.description
    rendered["parameters"] = tool.parameters
    return rendered


def check_tool_choice_name(name: str, tools: list[Tool], param: str) -> str:
    if not tools:
        raise tool_choice_without_tools()
    if name not in {tool.name for tool in tools}:
        raise ProtocolError(
            f"Invalid value for 'tool_choice': no function named '{name}' in 'tools'.", param
        )
    return name


def tool_choice_without_tools() -> ProtocolError:
    return ProtocolError(
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
        "specified.",
        "tool_choice",
    )


def image_url(part: ImagePart) -> str:
    """An image as OpenAI takes it: its URL, or a base64 data URL."""
    return part.url or f"data:{part.media_type};base64,{part.data}"


def prefixed(raw: str, prefix: str) -> str:
    """An id in this protocol's own form (``chatcmpl-…``, ``resp_…``)."""
    return raw if raw.startswith(prefix) else f"{prefix}{raw}"


def id_base(full: str, prefix: str) -> str:
    """The distinctive part of an id, to derive item and call ids from deterministically."""
    return full.removeprefix(prefix) or "0"


def tool_call_id(raw: str, fallback: str) -> str:
    """A caller-facing call id: ``call_…``. Other protocols' ids (``toolu_…``) keep their text,
    so the caller's echo of the call and of its result map to one consistent upstream id."""
    if not raw:
        return fallback
    return raw if raw.startswith("call_") else f"call_{raw}"


def error_message(error) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return f"Upstream error: {error['message']}"
    return f"Upstream error: {error}"


def openai_usage(*, total_input: int, cached: int, written: int, output: int, reasoning: int):
    """Usage from OpenAI's counts, whose input total includes cache reads and writes."""
    return Usage(
        input_tokens=max(total_input - cached - written, 0),
        output_tokens=output,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=reasoning,
    )


def count(obj, key: str) -> int:
    """A token count from an upstream's usage object (0 when absent)."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UpstreamFormatError(f"The upstream usage field '{key}' is not a number.")
    return int(value)
