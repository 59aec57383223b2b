"""OpenAI Responses codec: documented examples, both sides, and round trips."""

import json

import pytest

from generation.protocols import openai_chat as chat
from generation.protocols import openai_responses as responses
from generation.protocols.base import SSE, ProtocolError, UpstreamFormatError
from generation.protocols.internal import (
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    MessageEnd,
    MessageStart,
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
from tests.protocols import PNG, parse_sse, pieces
from tests.protocols import WEATHER as OPEN_WEATHER

WEATHER = {**OPEN_WEATHER, "additionalProperties": False}  # a strict tool closes its schema
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get current temperature for a given location.",
    "parameters": WEATHER,
    "strict": True,
}


def body(**fields) -> dict:
    return {"model": "gpt-4.1", "input": "Hi", **fields}


def event(kind: str, **fields) -> SSE:
    return SSE(data=json.dumps({"type": kind, **fields}), event=kind)


def upstream_response(status="in_progress", output=None, usage=None, **extra) -> dict:
    return {
        "id": "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654",
        "object": "response",
        "created_at": 1741290958,
        "status": status,
        "model": "gpt-4.1-2025-04-14",
        "output": output or [],
        "usage": usage,
        **extra,
    }


def run_parser(events: list[SSE]) -> list:
    parser = responses.StreamParser()
    out = []
    for sse in events:
        out.extend(parser.feed(sse))
    return out


def render_stream(request: ChatRequest, events: list, response_id="resp_abc") -> list[bytes]:
    renderer = responses.StreamRenderer(request, response_id, 1741290958)
    frames = []
    for item in events:
        frames.extend(renderer.feed(item))
    return frames + renderer.finish()


def payloads(frames: list[bytes]) -> list[dict]:
    return [sse.json() for sse in parse_sse(frames)]


# --- parse_request: documented examples ----------------------------------------------------------


def test_text_input_example():
    request = responses.parse_request(
        {"model": "gpt-4.1", "input": "Tell me a three sentence bedtime story about a unicorn."}
    )
    assert request == ChatRequest(
        model="gpt-4.1",
        messages=[
            Message("user", [TextPart("Tell me a three sentence bedtime story about a unicorn.")])
        ],
    )


def test_instructions_and_image_input_example():
    url = "https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/Gfp-wisconsin-madison-the-nature-boardwalk.jpg/2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg"
    request = responses.parse_request(
        {
            "model": "gpt-4.1",
            "instructions": "You are a helpful assistant.",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "what is in this image?"},
                        {"type": "input_image", "image_url": url, "detail": "auto"},
                    ],
                }
            ],
        }
    )
    assert request.system == "You are a helpful assistant."
    assert request.messages == [
        Message("user", [TextPart("what is in this image?"), ImagePart(url=url)])
    ]


def test_base64_image_input():
    request = responses.parse_request(
        body(
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_image", "image_url": f"data:image/jpeg;base64,{PNG}"}
                    ],
                }
            ]
        )
    )
    assert request.messages[0].parts == [ImagePart(media_type="image/jpeg", data=PNG)]


def test_function_calling_round_as_documented():
    """The guide's loop: the model's function_call item is appended to the input, then a
    function_call_output with its call_id."""
    request = responses.parse_request(
        {
            "model": "gpt-4.1",
            "input": [
                {"role": "user", "content": "What is the weather like in Paris today?"},
                {
                    "type": "function_call",
                    "id": "fc_12345xyz",
                    "call_id": "call_12345xyz",
                    "name": "get_weather",
                    "arguments": '{"location":"Paris, France"}',
                    "status": "completed",
                },
                {"type": "function_call_output", "call_id": "call_12345xyz", "output": "14"},
            ],
            "tools": [WEATHER_TOOL],
        }
    )
    assert request.tools == [
        Tool("get_weather", "Get current temperature for a given location.", WEATHER)
    ]
    assert request.messages == [
        Message("user", [TextPart("What is the weather like in Paris today?")]),
        Message(
            "assistant",
            [ToolCall("call_12345xyz", "get_weather", '{"location":"Paris, France"}')],
        ),
        Message("user", [ToolResult("call_12345xyz", [TextPart("14")], name="get_weather")]),
    ]


def test_multi_turn_with_typed_items_text_and_parallel_calls():
    request = responses.parse_request(
        body(
            instructions="Be brief.",
            input=[
                {"role": "developer", "content": "Use metric units."},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Paris and Rome?"}],
                },
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": "Checking both.", "annotations": []}
                    ],
                },
                {
                    "type": "function_call",
                    "call_id": "call_a",
                    "name": "get_weather",
                    "arguments": '{"location":"Paris"}',
                },
                {"type": "function_call", "call_id": "call_b", "name": "get_time", "arguments": ""},
                {"type": "function_call_output", "call_id": "call_a", "output": "18"},
                {
                    "type": "function_call_output",
                    "call_id": "call_b",
                    "output": [
                        {"type": "input_text", "text": "14:00"},
                        {"type": "input_image", "image_url": "https://example.com/clock.png"},
                    ],
                },
                {"role": "assistant", "content": "Paris 18C, Rome 14:00."},
                {"role": "user", "content": "Thanks"},
            ],
        )
    )
    assert request.system == "Be brief.\n\nUse metric units."
    assert request.messages == [
        Message("user", [TextPart("Paris and Rome?")]),
        Message(
            "assistant",
            [
                TextPart("Checking both."),
                ToolCall("call_a", "get_weather", '{"location":"Paris"}'),
                ToolCall("call_b", "get_time", "{}"),
            ],
        ),
        Message(
            "user",
            [
                ToolResult("call_a", [TextPart("18")], name="get_weather"),
                ToolResult(
                    "call_b",
                    [TextPart("14:00"), ImagePart(url="https://example.com/clock.png")],
                    name="get_time",
                ),
            ],
        ),
        Message("assistant", [TextPart("Paris 18C, Rome 14:00.")]),
        Message("user", [TextPart("Thanks")]),
    ]


def test_user_message_after_outputs_and_empty_assistant_items():
    request = responses.parse_request(
        body(
            input=[
                {"type": "function_call_output", "call_id": "x", "output": ""},
                {"role": "user", "content": "next"},
                {"role": "assistant", "content": ""},
                {"role": "system", "content": [{"type": "input_text", "text": "S"}]},
            ]
        )
    )
    assert request.messages == [
        Message("user", [ToolResult("x", [], name="")]),
        Message("user", [TextPart("next")]),
    ]
    assert request.system == "S"


def test_assistant_refusal_and_input_text_parts():
    request = responses.parse_request(
        body(
            input=[
                {
                    "role": "assistant",
                    "content": [
                        {"type": "refusal", "refusal": "No."},
                        {"type": "input_text", "text": "Sorry."},
                    ],
                }
            ]
        )
    )
    assert request.messages == [Message("assistant", [TextPart("No."), TextPart("Sorry.")])]


def test_parameters():
    request = responses.parse_request(
        body(
            max_output_tokens=256,
            temperature=0.7,
            top_p=0.5,
            stream=True,
            user="u-1",
            store=False,
            metadata={"k": "v"},
            parallel_tool_calls=False,
            reasoning={"effort": "low"},
            text={"format": {"type": "text"}},
            truncation="auto",
        )
    )
    assert (request.max_tokens, request.temperature, request.top_p) == (256, 0.7, 0.5)
    assert (request.stream, request.user) == (True, "u-1")
    assert request.stop == []


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", ("auto", "")),
        ("none", ("none", "")),
        ("required", ("required", "")),
        ({"type": "function", "name": "get_weather"}, ("tool", "get_weather")),
    ],
)
def test_tool_choice(tool_choice, expected):
    request = responses.parse_request(body(tools=[WEATHER_TOOL], tool_choice=tool_choice))
    assert (request.tool_choice, request.tool_choice_name) == expected


def test_model_argument_is_a_fallback():
    assert responses.parse_request({"input": "x"}, model="m").model == "m"
    assert responses.parse_request(body(model="b"), model="m").model == "b"


# --- parse_request: validation -------------------------------------------------------------------


def user_content(*parts) -> dict:
    return body(input=[{"role": "user", "content": list(parts)}])


@pytest.mark.parametrize(
    ("payload", "param", "message"),
    [
        ({"model": "gpt-4.1"}, "input", "Missing required parameter: 'input'."),
        ({"input": "x"}, "model", "Missing required parameter: 'model'."),
        (body(model=""), "model", "must not be empty"),
        (body(input=""), "input", "empty string"),
        (body(input=[]), "input", "empty array"),
        (
            body(input=3),
            "input",
            "expected one of a string or array of objects, but got an integer",
        ),
        (body(input=["hi"]), "input[0]", "expected an object"),
        (body(input=[{"content": "x"}]), "input[0].type", "Missing"),
        (body(input=[{"type": "message", "content": "x"}]), "input[0].role", "Missing"),
        (
            body(input=[{"role": "bot", "content": "x"}]),
            "input[0].role",
            "Invalid value: 'bot'. Supported values are: 'user', 'assistant', 'system', "
            "and 'developer'.",
        ),
        (body(input=[{"role": "user"}]), "input[0].content", "Missing"),
        (body(input=[{"role": "user", "content": 1}]), "input[0].content", "Invalid type"),
        (user_content("x"), "input[0].content[0]", "expected an object"),
        (
            user_content({"type": "text", "text": "x"}),
            "input[0].content[0].type",
            "Invalid value: 'text'. Supported values are: 'input_text', and 'input_image'.",
        ),
        (
            user_content({"type": "input_file", "file_id": "f"}),
            "input[0].content[0].type",
            "Invalid value: 'input_file'",
        ),
        (user_content({"type": "input_text"}), "input[0].content[0].text", "Missing"),
        (
            user_content(
                {"type": "input_text", "text": "a"},
                {"type": "input_image", "image_url": "data:application/pdf;base64,aGVsbG8="},
            ),
            "input[0].content[1].image_url",
            "Unsupported image type 'application/pdf'",
        ),
        (
            user_content({"type": "input_image", "image_url": "data:image/png;base64,!!"}),
            "input[0].content[0].image_url",
            "not valid base64",
        ),
        (
            user_content({"type": "input_image", "file_id": "file-1"}),
            "input[0].content[0].file_id",
            "'file_id' are not supported",
        ),
        (user_content({"type": "input_image"}), "input[0].content[0].image_url", "Missing"),
        (
            user_content({"type": "input_image", "image_url": {"url": "https://x"}}),
            "input[0].content[0].image_url",
            "Invalid type",
        ),
        (
            body(
                input=[
                    {
                        "role": "system",
                        "content": [{"type": "input_image", "image_url": "https://x"}],
                    }
                ]
            ),
            "input[0].content[0].type",
            "Supported values are: 'input_text'.",
        ),
        (
            body(
                input=[
                    {
                        "role": "assistant",
                        "content": [{"type": "input_image", "image_url": "https://x"}],
                    }
                ]
            ),
            "input[0].content[0].type",
            "Invalid value: 'input_image'",
        ),
        (
            body(input=[{"type": "function_call", "name": "f", "arguments": "{}"}]),
            "input[0].call_id",
            "Missing",
        ),
        (
            body(input=[{"type": "function_call", "call_id": "c", "arguments": "{}"}]),
            "input[0].name",
            "Missing",
        ),
        (
            body(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]),
            "input[0].arguments",
            "Invalid type",
        ),
        (
            body(input=[{"type": "function_call_output", "output": "x"}]),
            "input[0].call_id",
            "Missing",
        ),
        (
            body(input=[{"type": "function_call_output", "call_id": "c"}]),
            "input[0].output",
            "Missing",
        ),
        (
            body(input=[{"type": "function_call_output", "call_id": "c", "output": 5}]),
            "input[0].output",
            "Invalid type",
        ),
        (
            body(
                input=[
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "output_text", "text": "x"}],
                    }
                ]
            ),
            "input[0].output[0].type",
            "Invalid value: 'output_text'",
        ),
        (
            body(input=[{"type": "item_reference", "id": "msg_1"}]),
            "input[0].type",
            "Item references are not supported",
        ),
        (
            body(input=[{"type": "web_search_call", "id": "ws_1"}]),
            "input[0].type",
            "Unsupported input item type 'web_search_call'",
        ),
        (body(previous_response_id="resp_1"), "previous_response_id", "does not store responses"),
        (body(conversation="conv_1"), "conversation", "does not store conversations"),
        (body(background=True), "background", "not supported"),
        (body(instructions=["x"]), "instructions", "Invalid type"),
        (body(tools={}), "tools", "expected an array"),
        (body(tools=[1]), "tools[0]", "expected an object"),
        (body(tools=[{"name": "f"}]), "tools[0].type", "Missing"),
        (
            body(tools=[WEATHER_TOOL, {"type": "web_search"}]),
            "tools[1].type",
            "Unknown tool type 'web_search'",
        ),
        (body(tools=[{"type": "web_search_preview"}]), "tools[0].type", "built-in tools"),
        (body(tools=[{"type": "function", "parameters": {}}]), "tools[0].name", "Missing"),
        (body(tools=[{"type": "function", "name": "a b"}]), "tools[0].name", "letters, digits"),
        (
            body(tools=[{"type": "function", "name": "f", "description": 1}]),
            "tools[0].description",
            "Invalid type",
        ),
        (
            body(tools=[WEATHER_TOOL], tool_choice="always"),
            "tool_choice",
            "Invalid value: 'always'",
        ),
        (
            body(tools=[WEATHER_TOOL], tool_choice={"type": "web_search_preview"}),
            "tool_choice.type",
            "Unsupported tool_choice type",
        ),
        (
            body(tools=[WEATHER_TOOL], tool_choice={"type": "function"}),
            "tool_choice.name",
            "Missing",
        ),
        (
            body(tools=[WEATHER_TOOL], tool_choice={"type": "function", "name": "nope"}),
            "tool_choice.name",
            "no function named 'nope'",
        ),
        (
            body(tool_choice={"type": "function", "name": "get_weather"}),
            "tool_choice",
            "only allowed when 'tools'",
        ),
        (body(tool_choice="required"), "tool_choice", "only allowed when 'tools'"),
        (body(max_output_tokens=0), "max_output_tokens", "at least 1"),
        (body(max_output_tokens=-1), "max_output_tokens", "at least 1"),
        (body(max_output_tokens=10**8), "max_output_tokens", "at most"),
        (body(max_output_tokens="10"), "max_output_tokens", "Invalid type"),
        (body(temperature=3), "temperature", "at most 2"),
        (body(temperature=-1), "temperature", "at least 0"),
        (body(top_p=2), "top_p", "at most 1"),
        (body(top_p="x"), "top_p", "Invalid type"),
        (body(stream=1), "stream", "Invalid type"),
        (body(user=5), "user", "Invalid type"),
    ],
)
def test_validation_errors_name_the_field(payload, param, message):
    with pytest.raises(ProtocolError) as caught:
        responses.parse_request(payload)
    assert caught.value.param == param
    assert message in caught.value.message


@pytest.mark.parametrize("payload", [None, [], "text"])
def test_body_must_be_an_object(payload):
    with pytest.raises(ProtocolError, match="JSON object"):
        responses.parse_request(payload)


# --- render_response -----------------------------------------------------------------------------


def caller_request(**fields) -> ChatRequest:
    return ChatRequest(model="gpt-4.1", messages=[Message("user", [TextPart("x")])], **fields)


def test_render_documented_text_response_field_by_field():
    response = ChatResponse(
        id="67ccd2bed1ec8190",
        model="upstream",
        content=[TextPart("In a peaceful grove beneath a silver moon...")],
        usage=Usage(input_tokens=36, output_tokens=87),
    )
    rendered = responses.render_response(response, caller_request())
    created = rendered.pop("created_at")
    assert isinstance(created, int)
    assert rendered == {
        "id": "resp_67ccd2bed1ec8190",
        "object": "response",
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": "gpt-4.1",
        "output": [
            {
                "id": "msg_67ccd2bed1ec8190_0",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": "In a peaceful grove beneath a silver moon...",
                        "annotations": [],
                    }
                ],
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 36,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 87,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 123,
        },
        "user": None,
        "metadata": {},
    }


def test_render_text_and_function_calls_as_output_items():
    request = caller_request(
        system="Sys",
        tools=[Tool("get_weather", "Weather", WEATHER)],
        tool_choice="tool",
        tool_choice_name="get_weather",
        max_tokens=100,
        temperature=0.3,
        top_p=0.8,
        user="u",
    )
    response = ChatResponse(
        id="resp_r1",
        model="m",
        content=[
            TextPart("Let me check."),
            TextPart(" Both."),
            ToolCall("call_x", "get_weather", '{"location":"Paris"}'),
            ToolCall("toolu_01", "get_weather", ""),
            TextPart("Done."),
        ],
        stop_reason="tool_use",
        usage=Usage(
            input_tokens=5,
            output_tokens=7,
            cache_read_tokens=10,
            cache_write_tokens=2,
            reasoning_tokens=3,
        ),
    )
    rendered = responses.render_response(response, request)
    assert rendered["output"] == [
        {
            "id": "msg_r1_0",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Let me check.", "annotations": []},
                {"type": "output_text", "text": " Both.", "annotations": []},
            ],
        },
        {
            "id": "fc_r1_1",
            "type": "function_call",
            "status": "completed",
            "arguments": '{"location":"Paris"}',
            "call_id": "call_x",
            "name": "get_weather",
        },
        {
            "id": "fc_r1_2",
            "type": "function_call",
            "status": "completed",
            "arguments": "{}",
            "call_id": "call_toolu_01",
            "name": "get_weather",
        },
        {
            "id": "msg_r1_3",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Done.", "annotations": []}],
        },
    ]
    assert rendered["instructions"] == "Sys"
    assert rendered["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert rendered["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather",
            "parameters": WEATHER,
            "strict": False,
        }
    ]
    assert (rendered["max_output_tokens"], rendered["temperature"], rendered["top_p"]) == (
        100,
        0.3,
        0.8,
    )
    assert rendered["user"] == "u"
    assert rendered["usage"] == {
        "input_tokens": 17,
        "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 2},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 24,
    }


@pytest.mark.parametrize(
    ("stop_reason", "status", "details"),
    [
        ("end_turn", "completed", None),
        ("stop_sequence", "completed", None),
        ("tool_use", "completed", None),
        ("max_tokens", "incomplete", {"reason": "max_output_tokens"}),
        ("content_filter", "incomplete", {"reason": "content_filter"}),
    ],
)
def test_render_status(stop_reason, status, details):
    response = ChatResponse(id="r", model="m", content=[TextPart("x")], stop_reason=stop_reason)
    rendered = responses.render_response(response, caller_request())
    assert (rendered["status"], rendered["incomplete_details"]) == (status, details)


def test_render_call_without_id_gets_a_deterministic_one():
    response = ChatResponse(id="resp_q", model="m", content=[ToolCall("", "f"), ToolCall("", "g")])
    output = responses.render_response(response, caller_request())["output"]
    assert [item["call_id"] for item in output] == ["call_q_0", "call_q_1"]
    assert [item["id"] for item in output] == ["fc_q_0", "fc_q_1"]


# --- upstream_request ----------------------------------------------------------------------------


def full_request(**fields) -> ChatRequest:
    values = {
        "model": "caller",
        "system": "Be brief.",
        "messages": [
            Message(
                "user", [TextPart("What's here?"), ImagePart(media_type="image/png", data=PNG)]
            ),
            Message(
                "assistant",
                [
                    TextPart("Looking."),
                    ToolCall("call_1", "look", '{"q":1}'),
                    ToolCall("call_2", "zoom", "{}"),
                ],
            ),
            Message(
                "user",
                [
                    ToolResult("call_1", [TextPart("a cat")], name="look"),
                    ToolResult(
                        "call_2",
                        [TextPart("closer"), ImagePart(url="https://x/z.png")],
                        name="zoom",
                    ),
                ],
            ),
            Message("assistant", [TextPart("A cat.")]),
            Message("user", [TextPart("Thanks")]),
        ],
        "tools": [
            Tool("look", "Look", {"type": "object", "properties": {"q": {"type": "integer"}}}),
            Tool("zoom"),
        ],
        "tool_choice": "tool",
        "tool_choice_name": "look",
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "u1",
    }
    return ChatRequest(**{**values, **fields})


def test_upstream_request_body():
    call = responses.upstream_request(full_request(), "gpt-4.1-2025-04-14")
    assert call.path == "/responses"
    assert call.stream is False
    assert call.body == {
        "model": "gpt-4.1-2025-04-14",
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What's here?"},
                    {
                        "type": "input_image",
                        "image_url": f"data:image/png;base64,{PNG}",
                        "detail": "auto",
                    },
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Looking."}],
            },
            {"type": "function_call", "call_id": "call_1", "name": "look", "arguments": '{"q":1}'},
            {"type": "function_call", "call_id": "call_2", "name": "zoom", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [
                    {"type": "input_text", "text": "closer"},
                    {"type": "input_image", "image_url": "https://x/z.png", "detail": "auto"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "A cat."}],
            },
            {"type": "message", "role": "user", "content": "Thanks"},
        ],
        "store": False,
        "instructions": "Be brief.",
        "tools": [
            {
                "type": "function",
                "name": "look",
                "description": "Look",
                "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}},
                "strict": False,
            },
            {
                "type": "function",
                "name": "zoom",
                "parameters": {"type": "object", "properties": {}},
                "strict": False,
            },
        ],
        "tool_choice": {"type": "function", "name": "look"},
        "max_output_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "u1",
    }


def test_upstream_stream_and_minimal_body():
    call = responses.upstream_request(
        ChatRequest(
            "m", [Message("user", [TextPart("x")])], stream=True, stop=["END"], tool_choice="none"
        ),
        "u",
    )
    assert call.stream is True
    assert call.body == {
        "model": "u",
        "input": [{"type": "message", "role": "user", "content": "x"}],
        "store": False,
        "tool_choice": "none",
        "stream": True,
    }


def test_upstream_error_results():
    request = ChatRequest(
        "m",
        [
            Message(
                "user",
                [
                    ToolResult("a", [TextPart("boom")], is_error=True),
                    ToolResult("b", [ImagePart(url="https://x")], is_error=True),
                ],
            )
        ],
    )
    assert responses.upstream_request(request, "u").body["input"] == [
        {"type": "function_call_output", "call_id": "a", "output": "Error: boom"},
        {
            "type": "function_call_output",
            "call_id": "b",
            "output": [
                {"type": "input_text", "text": "Error:"},
                {"type": "input_image", "image_url": "https://x", "detail": "auto"},
            ],
        },
    ]


def test_empty_user_turns_are_not_sent():
    request = ChatRequest("m", [Message("user", []), Message("user", [TextPart("x")])])
    assert responses.upstream_request(request, "u").body["input"] == [
        {"type": "message", "role": "user", "content": "x"}
    ]


# --- parse_response ------------------------------------------------------------------------------


def test_parse_documented_text_response():
    response = responses.parse_response(
        {
            "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
            "object": "response",
            "created_at": 1741476542,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "max_output_tokens": None,
            "model": "gpt-4.1-2025-04-14",
            "output": [
                {
                    "type": "message",
                    "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {
                            "type": "output_text",
                            "text": "In a peaceful grove beneath a silver moon...",
                            "annotations": [],
                        }
                    ],
                }
            ],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": {
                "input_tokens": 36,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 87,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 123,
            },
            "user": None,
            "metadata": {},
        }
    )
    assert response == ChatResponse(
        id="resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        model="gpt-4.1-2025-04-14",
        content=[TextPart("In a peaceful grove beneath a silver moon...")],
        stop_reason="end_turn",
        usage=Usage(input_tokens=36, output_tokens=87),
    )


def test_parse_documented_function_call_response():
    response = responses.parse_response(
        upstream_response(
            "completed",
            output=[
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {
                    "type": "function_call",
                    "id": "fc_67ca09c6bedc8190a7abfec07b1a1332096610f474011cc0",
                    "call_id": "call_unLAR8MvFNptuiZK6K6HCy5k",
                    "name": "get_current_weather",
                    "arguments": '{"location":"Boston, MA","unit":"celsius"}',
                    "status": "completed",
                },
            ],
            usage={
                "input_tokens": 1000,
                "input_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 100},
                "output_tokens": 50,
                "output_tokens_details": {"reasoning_tokens": 20},
                "total_tokens": 1050,
            },
        )
    )
    assert response.content == [
        ToolCall(
            "call_unLAR8MvFNptuiZK6K6HCy5k",
            "get_current_weather",
            '{"location":"Boston, MA","unit":"celsius"}',
        )
    ]
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage(
        input_tokens=300,
        output_tokens=50,
        cache_read_tokens=600,
        cache_write_tokens=100,
        reasoning_tokens=20,
    )


@pytest.mark.parametrize(
    ("details", "stop_reason"),
    [
        ({"reason": "max_output_tokens"}, "max_tokens"),
        ({"reason": "content_filter"}, "content_filter"),
        (None, "max_tokens"),
    ],
)
def test_parse_incomplete(details, stop_reason):
    message = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "cut"}],
    }
    response = responses.parse_response(
        upstream_response("incomplete", output=[message], incomplete_details=details)
    )
    assert (response.stop_reason, response.text) == (stop_reason, "cut")


def test_parse_refusal_part():
    message = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "refusal", "refusal": "I can't help."}],
    }
    assert (
        responses.parse_response(upstream_response("completed", output=[message])).text
        == "I can't help."
    )


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"error": {"code": "server_error", "message": "boom"}},
        upstream_response("failed", error={"code": "server_error", "message": "boom"}),
        {"id": "resp_1", "status": "completed"},
        upstream_response("completed", output=["x"]),
        upstream_response("completed", output=[{"type": "function_call", "arguments": "{}"}]),
        upstream_response("completed", usage={"input_tokens": "ten"}),
    ],
)
def test_parse_response_refuses_what_is_not_a_response(payload):
    with pytest.raises(UpstreamFormatError):
        responses.parse_response(payload)


# --- Round trips (caller side <-> upstream side) -------------------------------------------------


def test_request_round_trip_keeps_meaning():
    request = full_request()
    assert responses.parse_request(responses.upstream_request(request, "caller").body) == request


def test_request_round_trip_from_caller_body():
    original = responses.parse_request(
        {
            "model": "gpt-4.1",
            "instructions": "I",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "a"},
                        {"type": "input_image", "image_url": f"data:image/webp;base64,{PNG}"},
                    ],
                },
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": "{}",
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            ],
            "tools": [WEATHER_TOOL],
            "tool_choice": "required",
            "max_output_tokens": 33,
            "stream": True,
        }
    )
    assert responses.parse_request(responses.upstream_request(original, "gpt-4.1").body) == original


@pytest.mark.parametrize("stop_reason", ["end_turn", "tool_use", "max_tokens", "content_filter"])
def test_response_round_trip(stop_reason):
    content = [TextPart("a"), TextPart("b")]
    if stop_reason == "tool_use":
        content += [
            ToolCall("call_1", "f", '{"x":1}'),
            TextPart("c"),
            ToolCall("call_2", "g", "{}"),
        ]
    response = ChatResponse(
        id="resp_1",
        model="gpt-4.1",
        content=content,
        stop_reason=stop_reason,
        usage=Usage(
            input_tokens=1,
            output_tokens=2,
            cache_read_tokens=3,
            cache_write_tokens=4,
            reasoning_tokens=1,
        ),
    )
    assert (
        responses.parse_response(responses.render_response(response, caller_request())) == response
    )


# --- StreamParser (upstream side) ----------------------------------------------------------------

MSG = "msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654"


def test_parse_documented_text_stream():
    part = {"type": "output_text", "text": "", "annotations": []}
    done_part = {"type": "output_text", "text": "Hi there!", "annotations": []}
    item = {
        "id": MSG,
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    events = run_parser(
        [
            event("response.created", response=upstream_response(), sequence_number=0),
            event("response.in_progress", response=upstream_response(), sequence_number=1),
            event("response.output_item.added", output_index=0, item=item, sequence_number=2),
            event(
                "response.content_part.added",
                item_id=MSG,
                output_index=0,
                content_index=0,
                part=part,
            ),
            event(
                "response.output_text.delta",
                item_id=MSG,
                output_index=0,
                content_index=0,
                delta="Hi",
            ),
            event(
                "response.output_text.delta",
                item_id=MSG,
                output_index=0,
                content_index=0,
                delta=" there!",
            ),
            event(
                "response.output_text.done",
                item_id=MSG,
                output_index=0,
                content_index=0,
                text="Hi there!",
            ),
            event(
                "response.content_part.done",
                item_id=MSG,
                output_index=0,
                content_index=0,
                part=done_part,
            ),
            event(
                "response.output_item.done",
                output_index=0,
                item={**item, "status": "completed", "content": [done_part]},
            ),
            event(
                "response.completed",
                response=upstream_response(
                    "completed",
                    usage={
                        "input_tokens": 37,
                        "output_tokens": 11,
                        "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": 48,
                    },
                ),
            ),
        ]
    )
    assert events == [
        MessageStart("resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654", "gpt-4.1-2025-04-14"),
        TextStart(0),
        TextDelta(0, "Hi"),
        TextDelta(0, " there!"),
        BlockStop(0),
        MessageEnd("end_turn", "", Usage(input_tokens=37, output_tokens=11)),
    ]


def test_parse_documented_function_call_stream():
    fragments = ['{"', "location", '":"', "Paris", ",", " France", '"}']
    item = {
        "type": "function_call",
        "id": "fc_1234xyz",
        "call_id": "call_1234xyz",
        "name": "get_weather",
        "arguments": "",
    }
    events = run_parser(
        [
            event("response.created", response=upstream_response()),
            event(
                "response.output_item.added", response_id="resp_1234xyz", output_index=0, item=item
            ),
            *[
                event(
                    "response.function_call_arguments.delta",
                    response_id="resp_1234xyz",
                    item_id="fc_1234xyz",
                    output_index=0,
                    delta=f,
                )
                for f in fragments
            ],
            event(
                "response.function_call_arguments.done",
                item_id="fc_1234xyz",
                output_index=0,
                arguments='{"location":"Paris, France"}',
            ),
            event(
                "response.output_item.done",
                output_index=0,
                item={**item, "arguments": '{"location":"Paris, France"}'},
            ),
            event("response.completed", response=upstream_response("completed", output=[item])),
        ]
    )
    assert events == [
        MessageStart("resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654", "gpt-4.1-2025-04-14"),
        ToolCallStart(0, "call_1234xyz", "get_weather"),
        *[ToolCallDelta(0, f) for f in fragments],
        BlockStop(0),
        MessageEnd("tool_use"),
    ]


def test_parse_stream_skips_reasoning_and_fills_in_whole_items():
    """Items given only whole (no deltas) still become blocks; reasoning items are skipped."""
    call = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "f",
        "arguments": '{"a":1}',
    }
    message = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Hey"}],
    }
    events = run_parser(
        [
            event("response.created", response=upstream_response()),
            event(
                "response.output_item.added",
                output_index=0,
                item={"type": "reasoning", "id": "rs_1"},
            ),
            event("response.reasoning_summary_text.delta", output_index=0, delta="thinking"),
            event(
                "response.output_item.done",
                output_index=0,
                item={"type": "reasoning", "id": "rs_1"},
            ),
            event("response.output_item.done", output_index=1, item=message),
            event("response.output_item.done", output_index=2, item=call),
            event(
                "response.incomplete",
                response=upstream_response(
                    "incomplete", incomplete_details={"reason": "max_output_tokens"}
                ),
            ),
        ]
    )
    assert events[1:] == [
        TextStart(0),
        TextDelta(0, "Hey"),
        BlockStop(0),
        ToolCallStart(1, "call_1", "f"),
        ToolCallDelta(1, '{"a":1}'),
        BlockStop(1),
        MessageEnd("max_tokens"),
    ]


def test_arguments_given_only_at_done_are_sent():
    item = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "f",
        "arguments": "",
    }
    events = run_parser(
        [
            event("response.created", response=upstream_response()),
            event("response.output_item.added", output_index=0, item=item),
            event("response.function_call_arguments.delta", output_index=0, delta='{"a"'),
            event("response.function_call_arguments.done", output_index=0, arguments='{"a":2}'),
            event(
                "response.output_item.done", output_index=0, item={**item, "arguments": '{"a":2}'}
            ),
            event("response.completed", response=upstream_response("completed")),
        ]
    )
    assert [e for e in events if isinstance(e, ToolCallDelta)] == [
        ToolCallDelta(0, '{"a"'),
        ToolCallDelta(0, ":2}"),
    ]


def test_stream_without_a_terminal_event_is_an_error():
    parser = responses.StreamParser()
    parser.feed(event("response.created", response=upstream_response()))
    with pytest.raises(UpstreamFormatError, match="before the response completed"):
        parser.close()


def test_stream_after_the_end_and_done_marker_are_ignored():
    parser = responses.StreamParser()
    parser.feed(event("response.created", response=upstream_response()))
    parser.feed(event("response.completed", response=upstream_response("completed")))
    assert parser.feed(SSE(data="[DONE]")) == []
    assert parser.feed(event("response.output_text.delta", delta="x")) == []
    assert parser.close() == []


@pytest.mark.parametrize(
    ("sse", "message"),
    [
        (SSE(data="nope"), "not JSON"),
        (SSE(data="[]"), "not a JSON object"),
        (event("error", code="rate_limit_exceeded", message="Slow down", param=None), "Slow down"),
        (
            event(
                "response.failed",
                response=upstream_response(
                    "failed", error={"code": "server_error", "message": "Broke"}
                ),
            ),
            "Broke",
        ),
    ],
)
def test_stream_parser_errors(sse, message):
    with pytest.raises(UpstreamFormatError, match=message):
        responses.StreamParser().feed(sse)


def test_event_name_from_the_sse_field_when_data_has_no_type():
    events = run_parser(
        [SSE(event="response.created", data=json.dumps({"response": upstream_response()}))]
    )
    assert events == [
        MessageStart("resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654", "gpt-4.1-2025-04-14")
    ]


# --- StreamRenderer (caller side) ----------------------------------------------------------------


def test_render_stream_event_sequence_exactly():
    request = caller_request(stream=True)
    frames = render_stream(
        request,
        [
            MessageStart("up", "upstream"),
            TextStart(0),
            TextDelta(0, "Hi"),
            TextDelta(0, "!"),
            BlockStop(0),
            ToolCallStart(1, "call_9", "f"),
            ToolCallDelta(1, '{"a"'),
            ToolCallDelta(1, ":1}"),
            BlockStop(1),
            MessageEnd("tool_use", usage=Usage(input_tokens=3, output_tokens=4)),
        ],
    )
    sses = parse_sse(frames)
    data = [sse.json() for sse in sses]
    assert [sse.event for sse in sses] == [d["type"] for d in data]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert frames[0].startswith(b"event: response.created\ndata: {")
    stripped = [
        {k: v for k, v in d.items() if k not in ("sequence_number", "response")} for d in data
    ]
    message = {"id": "msg_abc_0", "type": "message", "role": "assistant"}
    call = {"id": "fc_abc_1", "type": "function_call", "call_id": "call_9", "name": "f"}
    text_part = {"type": "output_text", "text": "Hi!", "annotations": []}
    assert stripped == [
        {"type": "response.created"},
        {"type": "response.in_progress"},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**message, "status": "in_progress", "content": []},
        },
        {
            "type": "response.content_part.added",
            "item_id": "msg_abc_0",
            "output_index": 0,
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []},
        },
        {
            "type": "response.output_text.delta",
            "item_id": "msg_abc_0",
            "output_index": 0,
            "content_index": 0,
            "delta": "Hi",
            "logprobs": [],
        },
        {
            "type": "response.output_text.delta",
            "item_id": "msg_abc_0",
            "output_index": 0,
            "content_index": 0,
            "delta": "!",
            "logprobs": [],
        },
        {
            "type": "response.output_text.done",
            "item_id": "msg_abc_0",
            "output_index": 0,
            "content_index": 0,
            "text": "Hi!",
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": "msg_abc_0",
            "output_index": 0,
            "content_index": 0,
            "part": text_part,
        },
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {**message, "status": "completed", "content": [text_part]},
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {**call, "status": "in_progress", "arguments": ""},
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": "fc_abc_1",
            "output_index": 1,
            "delta": '{"a"',
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": "fc_abc_1",
            "output_index": 1,
            "delta": ":1}",
        },
        {
            "type": "response.function_call_arguments.done",
            "item_id": "fc_abc_1",
            "output_index": 1,
            "arguments": '{"a":1}',
        },
        {
            "type": "response.output_item.done",
            "output_index": 1,
            "item": {**call, "status": "completed", "arguments": '{"a":1}'},
        },
        {"type": "response.completed"},
    ]
    created, final = data[0]["response"], data[-1]["response"]
    assert (created["id"], created["status"], created["output"], created["usage"]) == (
        "resp_abc",
        "in_progress",
        [],
        None,
    )
    assert created["created_at"] == 1741290958
    assert final["status"] == "completed"
    assert final["model"] == "gpt-4.1"
    assert final["output"] == [data[8]["item"], data[13]["item"]]
    assert final["usage"]["total_tokens"] == 7


def test_render_stream_max_tokens_is_incomplete():
    frames = render_stream(
        caller_request(),
        [MessageStart("u", "m"), TextStart(0), TextDelta(0, "cut"), MessageEnd("max_tokens")],
    )
    data = payloads(frames)
    assert data[-1]["type"] == "response.incomplete"
    assert data[-1]["response"]["status"] == "incomplete"
    assert data[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data[-2]["type"] == "response.output_item.done"  # the open block was closed first


def test_render_stream_finish_without_end_completes_and_is_idempotent():
    renderer = responses.StreamRenderer(caller_request(), "r", 5)
    renderer.feed(TextDelta(0, "x"))
    frames = renderer.finish()
    assert payloads(frames)[-1]["type"] == "response.completed"
    assert renderer.finish() == []
    assert renderer.feed(TextDelta(0, "y")) == []


def test_render_stream_fail():
    renderer = responses.StreamRenderer(caller_request(), "resp_r", 5)
    renderer.feed(MessageStart("u", "m"))
    data = payloads(renderer.fail("Upstream went away."))
    assert [d["type"] for d in data] == ["error", "response.failed"]
    assert data[0] == {
        "type": "error",
        "code": "upstream_error",
        "message": "Upstream went away.",
        "param": None,
        "sequence_number": 2,
    }
    assert data[1]["response"]["status"] == "failed"
    assert data[1]["response"]["error"] == {
        "code": "server_error",
        "message": "Upstream went away.",
    }
    assert renderer.fail("again") == []


def test_render_stream_ids_for_foreign_and_missing_call_ids():
    frames = render_stream(
        caller_request(),
        [
            ToolCallStart(0, "toolu_1", "f"),
            BlockStop(0),
            ToolCallStart(1, "", "g"),
            BlockStop(1),
            MessageEnd("tool_use"),
        ],
        response_id="msg_01",
    )
    items = [d["item"] for d in payloads(frames) if d["type"] == "response.output_item.done"]
    assert [(i["id"], i["call_id"], i["arguments"]) for i in items] == [
        ("fc_msg_01_0", "call_toolu_1", "{}"),
        ("fc_msg_01_1", "call_msg_01_1", "{}"),
    ]
    assert payloads(frames)[0]["response"]["id"] == "resp_msg_01"


# --- Stream round trips: renderer bytes -> SSE -> parser -----------------------------------------


def rich_stream(text: str, calls, stop="tool_use", usage=None) -> list:
    events: list = [MessageStart("resp_rt", "m"), TextStart(0)]
    events += [TextDelta(0, piece) for piece in pieces(text, 2)]
    events.append(BlockStop(0))
    for n, (call_id, name, arguments) in enumerate(calls, start=1):
        events.append(ToolCallStart(n, call_id, name))
        events += [ToolCallDelta(n, piece) for piece in pieces(arguments, 3)]
        events.append(BlockStop(n))
    events.append(MessageEnd(stop, usage=usage or Usage()))
    return events


CALLS = [
    ("call_1", "get_weather", json.dumps({"city": "Paris", "unit": "celsius", "days": [1, 2, 3]})),
    ("call_2", "get_time", json.dumps({"tz": "Europe/Rome"})),
    ("call_3", "noop", "{}"),
]


def test_stream_round_trip_text_and_several_calls():
    usage = Usage(
        input_tokens=100,
        output_tokens=40,
        cache_read_tokens=60,
        cache_write_tokens=5,
        reasoning_tokens=8,
    )
    events = rich_stream("Let me check the weather and time for you.", CALLS, usage=usage)
    parsed = run_parser(parse_sse(render_stream(caller_request(stream=True), events, "resp_rt")))
    assert parsed == [MessageStart("resp_rt", "gpt-4.1"), *events[1:]]


def test_stream_round_trip_max_tokens():
    events = rich_stream(
        "The answer is cut sh", [], stop="max_tokens", usage=Usage(input_tokens=5, output_tokens=7)
    )
    parsed = run_parser(parse_sse(render_stream(caller_request(stream=True), events, "resp_rt")))
    assert parsed == [MessageStart("resp_rt", "gpt-4.1"), *events[1:]]


def test_stream_final_response_matches_render_response():
    events = rich_stream("Hello there", CALLS[:2], usage=Usage(input_tokens=1, output_tokens=2))
    request = caller_request()
    final = payloads(render_stream(request, events, "resp_rt"))[-1]["response"]
    response = ChatResponse(
        id="resp_rt",
        model="m",
        content=[TextPart("Hello there"), *[ToolCall(i, n, a) for i, n, a in CALLS[:2]]],
        stop_reason="tool_use",
        usage=Usage(input_tokens=1, output_tokens=2),
    )
    rendered = responses.render_response(response, request)
    final.pop("created_at")
    rendered.pop("created_at")
    assert final == rendered


# --- Across the two OpenAI codecs ----------------------------------------------------------------


def test_chat_caller_to_responses_upstream_keeps_meaning():
    request = chat.parse_request(
        {
            "model": "gpt-4.1",
            "messages": [
                {"role": "system", "content": "S"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Look"},
                        {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": "ok",
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        },
                        {
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location":"Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": "18"},
                {"role": "tool", "tool_call_id": "call_b", "content": "20"},
                {"role": "user", "content": "Warmer?"},
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "max_tokens": 50,
            "temperature": 0,
        }
    )
    upstream = responses.upstream_request(request, "gpt-4.1").body
    assert responses.parse_request(upstream) == request


def test_responses_caller_to_chat_upstream_keeps_meaning():
    request = responses.parse_request(
        {
            "model": "gpt-4.1",
            "instructions": "I",
            "input": [
                {"role": "user", "content": "Weather?"},
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": "{}",
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            ],
            "tools": [WEATHER_TOOL],
            "max_output_tokens": 20,
        }
    )
    assert chat.parse_request(chat.upstream_request(request, "gpt-4.1").body) == request


def test_chat_upstream_stream_to_responses_caller_stream():
    """Interleaved parallel tool calls from a chat upstream reach a Responses caller whole."""

    def chunk(delta, finish=None, usage=None):
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return SSE(
            data=json.dumps(
                {"id": "chatcmpl-1", "model": "gpt-4o", "choices": choices, "usage": usage}
            )
        )

    upstream = [
        chunk({"role": "assistant", "content": "On it."}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_a", "function": {"name": "a", "arguments": '{"x"'}},
                    {"index": 1, "id": "call_b", "function": {"name": "b", "arguments": '{"y"'}},
                ]
            }
        ),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "function": {"arguments": ":2}"}},
                    {"index": 0, "function": {"arguments": ":1}"}},
                ]
            }
        ),
        chunk({}, "tool_calls"),
        chunk(
            None,
            usage={
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
        ),
        SSE(data="[DONE]"),
    ]
    parser = chat.StreamParser()
    internal = [e for sse in upstream for e in parser.feed(sse)]
    frames = render_stream(caller_request(stream=True), internal, "resp_x")
    final = payloads(frames)[-1]["response"]
    assert [(i["type"], i.get("call_id"), i.get("arguments")) for i in final["output"]] == [
        ("message", None, None),
        ("function_call", "call_a", '{"x":1}'),
        ("function_call", "call_b", '{"y":2}'),
    ]
    assert final["usage"]["input_tokens"] == 10
    assert final["usage"]["input_tokens_details"]["cached_tokens"] == 4
    assert run_parser(parse_sse(frames))[1:] == internal[1:]
