"""OpenAI Chat Completions codec: documented examples, both sides, and round trips."""

import json

import pytest

from generation.protocols import openai_chat as chat
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
from tests.protocols import PNG, WEATHER, parse_sse, pieces

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": WEATHER,
    },
}


def body(**fields) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], **fields}


def sse_json(chunk) -> SSE:
    return SSE(data=json.dumps(chunk))


def chunk(delta=None, finish=None, **extra) -> SSE:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return sse_json(
        {
            "id": "chatcmpl-123",
            "object": "chat.completion.chunk",
            "created": 1694268190,
            "model": "gpt-4o-mini",
            "choices": choices,
            **extra,
        }
    )


DONE = SSE(data="[DONE]")


def run_parser(events: list[SSE], *, close: bool = False) -> list:
    parser = chat.StreamParser()
    out = []
    for event in events:
        out.extend(parser.feed(event))
    if close:
        out.extend(parser.close())
    return out


def render_stream(request: ChatRequest, events: list, response_id="chatcmpl-abc") -> list[bytes]:
    renderer = chat.StreamRenderer(request, response_id, 1700000000)
    frames = []
    for event in events:
        frames.extend(renderer.feed(event))
    return frames + renderer.finish()


# --- parse_request: documented examples ----------------------------------------------------------


def test_default_example_developer_and_user():
    request = chat.parse_request(
        {
            "model": "gpt-4.1",
            "messages": [
                {"role": "developer", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Hello!"},
            ],
        }
    )
    assert request == ChatRequest(
        model="gpt-4.1",
        system="You are a helpful assistant.",
        messages=[Message("user", [TextPart("Hello!")])],
    )


def test_image_input_example_with_https_url():
    url = "https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/Gfp-wisconsin-madison-the-nature-boardwalk.jpg/2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg"
    request = chat.parse_request(
        {
            "model": "gpt-4.1",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What's in this image?"},
                        {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                    ],
                }
            ],
            "max_tokens": 300,
        }
    )
    assert request.messages == [
        Message("user", [TextPart("What's in this image?"), ImagePart(url=url)])
    ]
    assert request.max_tokens == 300


def test_image_as_base64_data_url():
    request = chat.parse_request(
        body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
                    ],
                }
            ]
        )
    )
    assert request.messages[0].parts == [ImagePart(media_type="image/png", data=PNG)]


def test_functions_example():
    request = chat.parse_request(
        {
            "model": "gpt-4.1",
            "messages": [{"role": "user", "content": "What is the weather like in Boston today?"}],
            "tools": [WEATHER_TOOL],
            "tool_choice": "auto",
        }
    )
    assert request.tools == [
        Tool("get_current_weather", "Get the current weather in a given location", WEATHER)
    ]
    assert request.tool_choice == "auto"


def test_tool_without_description_or_parameters_gets_an_empty_object_schema():
    request = chat.parse_request(body(tools=[{"type": "function", "function": {"name": "ping"}}]))
    assert request.tools == [Tool("ping", "", {"type": "object", "properties": {}})]


def test_tool_call_history_and_results_become_one_user_message_with_names():
    request = chat.parse_request(
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": '{"city":"Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {
                    "role": "tool",
                    "tool_call_id": "call_2",
                    "content": [{"type": "text", "text": "14:00"}],
                },
                {"role": "assistant", "content": "Paris 18C; Rome 14:00."},
                {"role": "user", "content": "Thanks"},
            ],
        }
    )
    assert request.system == "Be brief."
    assert request.messages == [
        Message("user", [TextPart("Weather in Paris and Rome?")]),
        Message(
            "assistant",
            [
                ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
                ToolCall("call_2", "get_time", '{"city":"Rome"}'),
            ],
        ),
        Message(
            "user",
            [
                ToolResult("call_1", [TextPart("18C")], name="get_weather"),
                ToolResult("call_2", [TextPart("14:00")], name="get_time"),
            ],
        ),
        Message("assistant", [TextPart("Paris 18C; Rome 14:00.")]),
        Message("user", [TextPart("Thanks")]),
    ]


def test_user_message_after_tool_results_stays_its_own_message():
    request = chat.parse_request(
        body(
            messages=[
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": ""},
                {"role": "user", "content": "and now?"},
            ]
        )
    )
    assert request.messages[1:] == [
        Message("assistant", [ToolCall("c1", "f", "{}")]),
        Message("user", [ToolResult("c1", [], name="f")]),
        Message("user", [TextPart("and now?")]),
    ]


def test_tool_result_for_an_unknown_call_has_no_name():
    request = chat.parse_request(
        body(messages=[{"role": "tool", "tool_call_id": "nope", "content": "x"}])
    )
    assert request.messages == [Message("user", [ToolResult("nope", [TextPart("x")], name="")])]


def test_assistant_content_parts_refusal_and_empty_turns():
    request = chat.parse_request(
        body(
            messages=[
                {"role": "user", "content": "a"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "one"},
                        {"type": "refusal", "refusal": "no"},
                    ],
                },
                {"role": "assistant", "content": ""},
                {"role": "assistant", "content": None},
                {"role": "user", "content": "b"},
            ]
        )
    )
    assert request.messages == [
        Message("user", [TextPart("a")]),
        Message("assistant", [TextPart("one"), TextPart("no")]),
        Message("user", [TextPart("b")]),
    ]


def test_system_and_developer_messages_anywhere_are_joined():
    request = chat.parse_request(
        body(
            messages=[
                {"role": "system", "content": "One."},
                {"role": "user", "content": "Hi"},
                {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
                {"role": "system", "content": ""},
            ]
        )
    )
    assert request.system == "One.\n\nTwo."
    assert request.messages == [Message("user", [TextPart("Hi")])]


def test_object_arguments_are_accepted_as_json_text():
    request = chat.parse_request(
        body(
            messages=[
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": {"a": 1}},
                        }
                    ],
                }
            ]
        )
    )
    assert request.messages[0].parts == [ToolCall("c", "f", '{"a": 1}')]


def test_sampling_and_limits():
    request = chat.parse_request(
        body(
            max_tokens=100,
            max_completion_tokens=50,
            temperature=0.2,
            top_p=1,
            stop="END",
            user="user-1234",
            n=1,
            stream=True,
            stream_options={"include_usage": True},
            seed=7,
            parallel_tool_calls=False,
        )
    )
    assert request.max_tokens == 50  # max_completion_tokens wins
    assert (request.temperature, request.top_p) == (0.2, 1)
    assert request.stop == ["END"]
    assert request.user == "user-1234"
    assert (request.stream, request.stream_usage) == (True, True)


def test_max_tokens_alone_and_stop_list():
    request = chat.parse_request(body(max_tokens=10, stop=["a", "", "b"], stream=True))
    assert request.max_tokens == 10
    assert request.stop == ["a", "b"]
    assert (request.stream, request.stream_usage) == (True, False)


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", ("auto", "")),
        ("none", ("none", "")),
        ("required", ("required", "")),
        (
            {"type": "function", "function": {"name": "get_current_weather"}},
            ("tool", "get_current_weather"),
        ),
    ],
)
def test_tool_choice(tool_choice, expected):
    request = chat.parse_request(body(tools=[WEATHER_TOOL], tool_choice=tool_choice))
    assert (request.tool_choice, request.tool_choice_name) == expected


def test_model_argument_is_a_fallback():
    assert (
        chat.parse_request({"messages": [{"role": "user", "content": "x"}]}, model="m").model == "m"
    )
    assert chat.parse_request(body(model="b"), model="m").model == "b"


# --- parse_request: validation -------------------------------------------------------------------

DATA_URL_TEXT = "data:text/plain;base64,aGVsbG8="


@pytest.mark.parametrize(
    ("payload", "param", "message"),
    [
        ({"model": "gpt-4o"}, "messages", "Missing required parameter: 'messages'."),
        (
            {"messages": [{"role": "user", "content": "x"}]},
            "model",
            "Missing required parameter: 'model'.",
        ),
        (body(model=""), "model", "must not be empty"),
        (body(model=3), "model", "Invalid type for 'model'"),
        (body(messages=[]), "messages", "empty array"),
        (body(messages="hi"), "messages", "Invalid type for 'messages'"),
        (body(messages=["hi"]), "messages[0]", "expected an object, but got a string"),
        (body(messages=[{"content": "x"}]), "messages[0].role", "Missing required parameter"),
        (
            body(messages=[{"role": "bot", "content": "x"}]),
            "messages[0].role",
            "Invalid value: 'bot'. Supported values are: 'system', 'developer', 'user', "
            "'assistant', and 'tool'.",
        ),
        (
            body(messages=[{"role": "function", "name": "f", "content": "x"}]),
            "messages[0].role",
            "deprecated role 'function'",
        ),
        (body(messages=[{"role": "user"}]), "messages[0].content", "Missing required parameter"),
        (
            body(messages=[{"role": "user", "content": 5}]),
            "messages[0].content",
            "expected one of a string or array of objects, but got an integer",
        ),
        (body(messages=[{"role": "user", "content": []}]), "messages[0].content", "empty array"),
        (
            body(messages=[{"role": "user", "content": ["x"]}]),
            "messages[0].content[0]",
            "expected an object",
        ),
        (
            body(messages=[{"role": "user", "content": [{"text": "x"}]}]),
            "messages[0].content[0].type",
            "Missing",
        ),
        (
            body(
                messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]
            ),
            "messages[0].content[0].type",
            "Invalid value: 'input_audio'. Supported values are: 'text', and 'image_url'.",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
            "messages[0].content[0].text",
            "Missing",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "a"},
                            {"type": "image_url", "image_url": {"url": DATA_URL_TEXT}},
                        ],
                    }
                ]
            ),
            "messages[0].content[1].image_url",
            "Unsupported image type 'text/plain'",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}
                        ],
                    }
                ]
            ),
            "messages[0].content[0].image_url",
            "not valid base64",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}],
                    }
                ]
            ),
            "messages[0].content[0].image_url",
            "http(s) URL or a base64 data URL",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
            "messages[0].content[0].image_url.url",
            "Missing",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
            "messages[0].content[0].image_url",
            "Missing",
        ),
        (
            body(
                messages=[
                    {
                        "role": "system",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x"}}],
                    }
                ]
            ),
            "messages[0].content[0].type",
            "Supported values are: 'text'.",
        ),
        (
            body(messages=[{"role": "assistant", "content": 1}]),
            "messages[0].content",
            "Invalid type",
        ),
        (
            body(messages=[{"role": "assistant", "tool_calls": {}}]),
            "messages[0].tool_calls",
            "expected an array",
        ),
        (
            body(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    }
                ]
            ),
            "messages[0].tool_calls[0].id",
            "Missing",
        ),
        (
            body(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "custom", "custom": {}}],
                    }
                ]
            ),
            "messages[0].tool_calls[0].type",
            "Invalid value: 'custom'",
        ),
        (
            body(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}],
                    }
                ]
            ),
            "messages[0].tool_calls[0].function.name",
            "Missing",
        ),
        (
            body(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 3}}],
                    }
                ]
            ),
            "messages[0].tool_calls[0].function.arguments",
            "Invalid type",
        ),
        (body(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id", "Missing"),
        (body(n=2), "n", "'n' greater than 1 is not supported"),
        (body(n=0), "n", "at least 1"),
        (body(functions=[{"name": "f"}]), "functions", "deprecated"),
        (body(tools={}), "tools", "expected an array"),
        (body(tools=["f"]), "tools[0]", "expected an object"),
        (body(tools=[{"function": {"name": "f"}}]), "tools[0].type", "Missing"),
        (
            body(tools=[WEATHER_TOOL, {"type": "web_search"}]),
            "tools[1].type",
            "Unknown tool type 'web_search'",
        ),
        (body(tools=[{"type": "function"}]), "tools[0].function", "Missing"),
        (
            body(tools=[{"type": "function", "function": {"description": "d"}}]),
            "tools[0].function.name",
            "Missing",
        ),
        (
            body(tools=[{"type": "function", "function": {"name": "bad name!"}}]),
            "tools[0].function.name",
            "letters, digits",
        ),
        (
            body(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
            "tools[0].function.parameters",
            "expected an object",
        ),
        (body(tools=[WEATHER_TOOL], tool_choice="any"), "tool_choice", "Invalid value: 'any'"),
        (body(tools=[WEATHER_TOOL], tool_choice=1), "tool_choice", "Invalid type"),
        (body(tool_choice="required"), "tool_choice", "only allowed when 'tools' are specified"),
        (
            body(
                tools=[WEATHER_TOOL],
                tool_choice={"type": "function", "function": {"name": "other"}},
            ),
            "tool_choice.function.name",
            "no function named 'other'",
        ),
        (
            body(tools=[WEATHER_TOOL], tool_choice={"type": "allowed_tools"}),
            "tool_choice.type",
            "Unsupported tool_choice type",
        ),
        (
            body(tools=[WEATHER_TOOL], tool_choice={"type": "function"}),
            "tool_choice.function",
            "Missing",
        ),
        (body(max_tokens=0), "max_tokens", "at least 1"),
        (body(max_tokens=-5), "max_tokens", "at least 1"),
        (body(max_tokens=10**9), "max_tokens", "at most"),
        (body(max_tokens="100"), "max_tokens", "Invalid type for 'max_tokens'"),
        (body(max_completion_tokens=1.5), "max_completion_tokens", "Invalid type"),
        (body(temperature=2.5), "temperature", "at most 2"),
        (body(temperature=-0.1), "temperature", "at least 0"),
        (body(temperature="hot"), "temperature", "Invalid type for 'temperature'"),
        (body(top_p=1.5), "top_p", "at most 1"),
        (body(top_p=True), "top_p", "Invalid type"),
        (body(stop=["a", "b", "c", "d", "e"]), "stop", "too many stop sequences"),
        (body(stop=5), "stop", "Invalid type"),
        (body(stop=["a", 1]), "stop[1]", "Invalid type"),
        (body(stream="yes"), "stream", "Invalid type"),
        (
            body(stream_options={"include_usage": True}),
            "stream_options",
            "only allowed when 'stream' is enabled",
        ),
        (body(stream=True, stream_options=[]), "stream_options", "Invalid type"),
        (
            body(stream=True, stream_options={"include_usage": "yes"}),
            "stream_options.include_usage",
            "Invalid type",
        ),
        (body(user=1), "user", "Invalid type"),
    ],
)
def test_validation_errors_name_the_field(payload, param, message):
    with pytest.raises(ProtocolError) as caught:
        chat.parse_request(payload)
    assert caught.value.param == param
    assert message in caught.value.message


@pytest.mark.parametrize("payload", [None, [], "text", 3])
def test_body_must_be_an_object(payload):
    with pytest.raises(ProtocolError, match="JSON object"):
        chat.parse_request(payload)


# --- render_response -----------------------------------------------------------------------------


def test_render_text_response_field_by_field():
    request = ChatRequest(model="gpt-4o", messages=[])
    response = ChatResponse(
        id="abc",
        model="upstream-model",
        content=[TextPart("Hello! "), TextPart("How can I help?")],
        usage=Usage(input_tokens=9, output_tokens=12, cache_read_tokens=10, reasoning_tokens=2),
    )
    rendered = chat.render_response(response, request)
    assert rendered["id"] == "chatcmpl-abc"
    assert rendered["object"] == "chat.completion"
    assert isinstance(rendered["created"], int)
    assert rendered["model"] == "gpt-4o"
    assert rendered["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert rendered["usage"] == {
        "prompt_tokens": 19,
        "completion_tokens": 12,
        "total_tokens": 31,
        "prompt_tokens_details": {"cached_tokens": 10},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }


def test_render_tool_calls_keeps_or_prefixes_ids():
    response = ChatResponse(
        id="chatcmpl-xyz",
        model="m",
        content=[
            TextPart("Checking."),
            ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
            ToolCall("toolu_01A", "get_time", ""),
            ToolCall("", "noop"),
        ],
        stop_reason="tool_use",
    )
    rendered = chat.render_response(response, ChatRequest(model="", messages=[]))
    assert rendered["id"] == "chatcmpl-xyz"
    assert rendered["model"] == "m"
    choice = rendered["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "id": "call_toolu_01A",
            "type": "function",
            "function": {"name": "get_time", "arguments": "{}"},
        },
        {"id": "call_xyz_2", "type": "function", "function": {"name": "noop", "arguments": "{}"}},
    ]


@pytest.mark.parametrize(
    ("stop_reason", "tools", "finish"),
    [
        ("end_turn", False, "stop"),
        ("stop_sequence", False, "stop"),
        ("max_tokens", False, "length"),
        ("tool_use", True, "tool_calls"),
        ("end_turn", True, "tool_calls"),
        ("content_filter", False, "content_filter"),
        ("max_tokens", True, "length"),
    ],
)
def test_finish_reasons(stop_reason, tools, finish):
    content = [ToolCall("call_1", "f")] if tools else [TextPart("x")]
    response = ChatResponse(id="r", model="m", content=content, stop_reason=stop_reason)
    rendered = chat.render_response(response, ChatRequest(model="m", messages=[]))
    assert rendered["choices"][0]["finish_reason"] == finish


def test_render_empty_answer_has_null_content():
    rendered = chat.render_response(ChatResponse(id="r", model="m"), ChatRequest("m", []))
    assert rendered["choices"][0]["message"]["content"] is None
    assert "tool_calls" not in rendered["choices"][0]["message"]


def test_usage_counts_cache_writes_as_prompt_tokens():
    usage = chat.render_usage(
        Usage(input_tokens=5, output_tokens=1, cache_read_tokens=3, cache_write_tokens=7)
    )
    assert usage["prompt_tokens"] == 15
    assert usage["prompt_tokens_details"] == {"cached_tokens": 3, "cache_write_tokens": 7}
    assert usage["total_tokens"] == 16


# --- upstream_request ----------------------------------------------------------------------------


def full_request(**fields) -> ChatRequest:
    values = {
        "model": "caller-model",
        "system": "Be brief.",
        "messages": [
            Message(
                "user", [TextPart("What's here?"), ImagePart(media_type="image/png", data=PNG)]
            ),
            Message(
                "assistant", [TextPart("Let me check."), ToolCall("call_1", "look", '{"q":1}')]
            ),
            Message("user", [ToolResult("call_1", [TextPart("a cat")], name="look")]),
            Message("user", [TextPart("Thanks"), ImagePart(url="https://example.com/a.png")]),
        ],
        "tools": [
            Tool(
                "look", "Look closer", {"type": "object", "properties": {"q": {"type": "integer"}}}
            )
        ],
        "tool_choice": "tool",
        "tool_choice_name": "look",
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
        "user": "u1",
    }
    return ChatRequest(**{**values, **fields})


def test_upstream_request_body():
    call = chat.upstream_request(full_request(), "gpt-4o-2024-08-06")
    assert call.path == "/chat/completions"
    assert call.stream is False
    assert call.body == {
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What's here?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "look", "arguments": '{"q":1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Thanks"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "look",
                    "description": "Look closer",
                    "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}},
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "look"}},
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
        "user": "u1",
    }


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("o3", "max_completion_tokens"),
        ("gpt-5-mini", "max_completion_tokens"),
        ("gpt-4.1", "max_tokens"),
        ("deepseek-chat", "max_tokens"),
    ],
)
def test_reasoning_models_get_max_completion_tokens(model, key):
    body = chat.upstream_request(
        ChatRequest("m", [Message("user", [TextPart("x")])], max_tokens=5), model
    ).body
    assert body[key] == 5
    assert {"max_tokens", "max_completion_tokens"} & set(body) == {key}


def test_upstream_stream_always_asks_for_usage():
    call = chat.upstream_request(
        ChatRequest("m", [Message("user", [TextPart("x")])], stream=True), "u"
    )
    assert call.stream is True
    assert call.body["stream"] is True
    assert call.body["stream_options"] == {"include_usage": True}
    assert call.body["messages"] == [{"role": "user", "content": "x"}]
    assert set(call.body) == {"model", "messages", "stream", "stream_options"}


def test_tool_result_images_and_errors_upstream():
    request = ChatRequest(
        "m",
        [
            Message(
                "user",
                [
                    ToolResult(
                        "t1", [TextPart("see"), ImagePart(url="https://x/y.png")], name="shot"
                    ),
                    ToolResult("t2", [TextPart("boom")], name="run", is_error=True),
                ],
            )
        ],
    )
    assert chat.upstream_request(request, "u").body["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "see"},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: boom"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
        },
    ]


def test_assistant_with_several_text_parts_and_tool_choice_strings():
    request = ChatRequest(
        "m",
        [Message("assistant", [TextPart("a"), TextPart("b")]), Message("assistant", [])],
        tool_choice="required",
    )
    body = chat.upstream_request(request, "u").body
    assert body["messages"] == [
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        }
    ]
    assert body["tool_choice"] == "required"


def test_empty_user_turns_are_not_sent():
    request = ChatRequest("m", [Message("user", []), Message("user", [TextPart("x")])])
    assert chat.upstream_request(request, "u").body["messages"] == [
        {"role": "user", "content": "x"}
    ]


# --- parse_response ------------------------------------------------------------------------------


def test_parse_documented_response():
    response = chat.parse_response(
        {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1741569952,
            "model": "gpt-4.1-2025-04-14",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Hello! How can I assist you today?",
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 19,
                "completion_tokens": 10,
                "total_tokens": 29,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
        }
    )
    assert response == ChatResponse(
        id="chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        model="gpt-4.1-2025-04-14",
        content=[TextPart("Hello! How can I assist you today?")],
        stop_reason="end_turn",
        usage=Usage(input_tokens=19, output_tokens=10),
    )


def test_parse_documented_function_call_response():
    response = chat.parse_response(
        {
            "id": "chatcmpl-abc123",
            "object": "chat.completion",
            "created": 1699896916,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_abc123",
                                "type": "function",
                                "function": {
                                    "name": "get_current_weather",
                                    "arguments": '{\n"location": "Boston, MA"\n}',
                                },
                            }
                        ],
                    },
                    "logprobs": None,
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
        }
    )
    assert response.content == [
        ToolCall("call_abc123", "get_current_weather", '{\n"location": "Boston, MA"\n}')
    ]
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage(input_tokens=82, output_tokens=17)


def test_parse_usage_with_cache_and_reasoning():
    usage = chat.parse_usage(
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
            "completion_tokens_details": {"reasoning_tokens": 192},
        }
    )
    assert usage == Usage(
        input_tokens=86, output_tokens=300, cache_read_tokens=1920, reasoning_tokens=192
    )


def test_parse_deepseek_cache_fields():
    usage = chat.parse_usage(
        {
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "prompt_cache_hit_tokens": 64,
            "prompt_cache_miss_tokens": 36,
            "prompt_tokens_details": None,
        }
    )
    assert usage == Usage(input_tokens=36, output_tokens=5, cache_read_tokens=64)


def message_response(message: dict, finish: str | None, **choice) -> dict:
    return {
        "id": "x",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
    }


@pytest.mark.parametrize(
    ("finish", "extra", "stop_reason", "stop_sequence"),
    [
        ("stop", {}, "end_turn", ""),
        ("length", {}, "max_tokens", ""),
        ("content_filter", {}, "content_filter", ""),
        (None, {}, "end_turn", ""),
        ("stop", {"stop_reason": "END"}, "stop_sequence", "END"),  # vLLM
        ("stop", {"stop_reason": 128001}, "end_turn", ""),  # vLLM: a stop token id
    ],
)
def test_parse_stop_reasons(finish, extra, stop_reason, stop_sequence):
    response = chat.parse_response(
        message_response({"role": "assistant", "content": "x"}, finish, **extra)
    )
    assert (response.stop_reason, response.stop_sequence) == (stop_reason, stop_sequence)


def test_parse_ollama_tool_calls_with_stop_and_object_arguments():
    response = chat.parse_response(
        message_response(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
            },
            "stop",
        )
    )
    assert response.content == [ToolCall("call_0", "f", '{"a": 1}')]
    assert response.stop_reason == "tool_use"


def test_parse_refusal_and_content_parts():
    refused = chat.parse_response(
        message_response({"role": "assistant", "content": None, "refusal": "I can't."}, "stop")
    )
    assert refused.content == [TextPart("I can't.")]
    parts = chat.parse_response(
        message_response(
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            "stop",
        )
    )
    assert parts.content == [TextPart("ab")]


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"error": {"message": "Rate limit", "type": "rate_limit_error"}},
        {"id": "x", "choices": []},
        {"id": "x", "choices": [{"index": 0}]},
        message_response({"role": "assistant", "tool_calls": [{"id": "c"}]}, "tool_calls"),
        message_response({"role": "assistant", "tool_calls": "x"}, "tool_calls"),
        {
            **message_response({"role": "assistant", "content": "x"}, "stop"),
            "usage": {"prompt_tokens": "many"},
        },
    ],
)
def test_parse_response_refuses_what_is_not_a_completion(payload):
    with pytest.raises(UpstreamFormatError):
        chat.parse_response(payload)


def test_upstream_error_message_is_kept():
    with pytest.raises(UpstreamFormatError, match="Rate limit"):
        chat.parse_response({"error": {"message": "Rate limit", "type": "rate_limit_error"}})


# --- Round trips (caller side <-> upstream side) -------------------------------------------------


def test_request_round_trip_keeps_meaning():
    request = full_request()
    again = chat.parse_request(chat.upstream_request(request, "caller-model").body)
    assert again == request


def test_request_round_trip_from_caller_body():
    original = chat.parse_request(
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "S"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/jpeg;base64,{PNG}"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": "ok",
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        },
                        {
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "g", "arguments": '{"x":1}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": "A"},
                {"role": "tool", "tool_call_id": "call_b", "content": "B"},
            ],
            "tools": [WEATHER_TOOL],
            "tool_choice": "none",
            "max_completion_tokens": 9,
            "stop": ["x", "y"],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    again = chat.parse_request(chat.upstream_request(original, "gpt-4o").body)
    assert again == original


def test_response_round_trip():
    response = ChatResponse(
        id="chatcmpl-1",
        model="m",
        content=[
            TextPart("Sure."),
            ToolCall("call_1", "f", '{"a":1}'),
            ToolCall("call_2", "g", "{}"),
        ],
        stop_reason="tool_use",
        usage=Usage(input_tokens=10, output_tokens=20, cache_read_tokens=5, reasoning_tokens=3),
    )
    assert chat.parse_response(chat.render_response(response, ChatRequest("m", []))) == response


@pytest.mark.parametrize("stop_reason", ["end_turn", "max_tokens", "content_filter"])
def test_response_round_trip_stop_reasons(stop_reason):
    response = ChatResponse(
        id="chatcmpl-1", model="m", content=[TextPart("x")], stop_reason=stop_reason
    )
    assert chat.parse_response(chat.render_response(response, ChatRequest("m", []))) == response


def test_response_round_trip_keeps_cache_writes():
    usage = Usage(input_tokens=10, cache_write_tokens=4, cache_read_tokens=2, output_tokens=1)
    response = ChatResponse(id="chatcmpl-1", model="m", content=[TextPart("x")], usage=usage)
    parsed = chat.parse_response(chat.render_response(response, ChatRequest("m", [])))
    assert parsed.usage == usage


def test_parse_usage_with_cache_writes():
    usage = chat.parse_usage(
        {
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 50},
        }
    )
    assert usage == Usage(
        input_tokens=20, output_tokens=5, cache_read_tokens=30, cache_write_tokens=50
    )


# --- StreamParser (upstream side) ----------------------------------------------------------------


def test_parse_documented_text_stream():
    events = run_parser(
        [
            chunk({"role": "assistant", "content": ""}, system_fingerprint="fp_44709d6fcb"),
            chunk({"content": "Hello"}),
            chunk({"content": "!"}),
            chunk({}, "stop"),
            DONE,
        ]
    )
    assert events == [
        MessageStart(id="chatcmpl-123", model="gpt-4o-mini"),
        TextStart(0),
        TextDelta(0, "Hello"),
        TextDelta(0, "!"),
        BlockStop(0),
        MessageEnd("end_turn", "", Usage()),
    ]


def test_parse_documented_tool_call_stream():
    fragments = ['{"', "location", '":"', "Paris", ",", " France", '"}']
    stream = [
        chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            }
        ),
        *[
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": None,
                            "function": {"arguments": f, "name": None},
                            "type": None,
                        }
                    ]
                }
            )
            for f in fragments
        ],
        chunk({}, "tool_calls"),
        DONE,
    ]
    events = run_parser(stream)
    assert events == [
        MessageStart(id="chatcmpl-123", model="gpt-4o-mini"),
        ToolCallStart(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather"),
        *[ToolCallDelta(0, f) for f in fragments],
        BlockStop(0),
        MessageEnd("tool_use", "", Usage()),
    ]


def test_usage_chunk_after_finish_reason_reaches_message_end():
    events = run_parser(
        [
            chunk({"role": "assistant", "content": "Hi"}, usage=None),
            chunk({}, "length", usage=None),
            chunk(
                None,
                usage={
                    "prompt_tokens": 30,
                    "completion_tokens": 2,
                    "total_tokens": 32,
                    "prompt_tokens_details": {"cached_tokens": 20},
                    "completion_tokens_details": {"reasoning_tokens": 1},
                },
            ),
            DONE,
        ]
    )
    assert events[-1] == MessageEnd(
        "max_tokens",
        "",
        Usage(input_tokens=10, output_tokens=2, cache_read_tokens=20, reasoning_tokens=1),
    )
    assert events[-2] == BlockStop(0)


def test_missing_done_is_tolerated_on_close():
    parser = chat.StreamParser()
    events = parser.feed(chunk({"content": "Hi"})) + parser.feed(chunk({}, "stop"))
    events += parser.close()
    assert events[-1] == MessageEnd()
    assert parser.close() == []
    assert parser.feed(chunk({"content": "late"})) == []


def test_truncated_stream_closes_its_open_block():
    events = run_parser([chunk({"content": "Hi"})], close=True)
    assert events == [
        MessageStart("chatcmpl-123", "gpt-4o-mini"),
        TextStart(0),
        TextDelta(0, "Hi"),
        BlockStop(0),
        MessageEnd(),
    ]


def test_empty_stream_is_an_upstream_error():
    with pytest.raises(UpstreamFormatError):
        chat.StreamParser().close()
    with pytest.raises(UpstreamFormatError):
        chat.StreamParser().feed(DONE)


def test_text_then_sequential_tool_calls_one_block_at_a_time():
    def call(index, **fields):
        return chunk({"tool_calls": [{"index": index, **fields}]})

    events = run_parser(
        [
            chunk({"role": "assistant", "content": "Let me look."}),
            call(0, id="call_a", type="function", function={"name": "a", "arguments": ""}),
            call(0, function={"arguments": '{"x":'}),
            call(0, function={"arguments": "1}"}),
            call(1, id="call_b", type="function", function={"name": "b", "arguments": ""}),
            call(1, function={"arguments": "{}"}),
            chunk({}, "tool_calls"),
            DONE,
        ]
    )
    assert events[1:] == [
        TextStart(0),
        TextDelta(0, "Let me look."),
        BlockStop(0),
        ToolCallStart(1, "call_a", "a"),
        ToolCallDelta(1, '{"x":'),
        ToolCallDelta(1, "1}"),
        BlockStop(1),
        ToolCallStart(2, "call_b", "b"),
        ToolCallDelta(2, "{}"),
        BlockStop(2),
        MessageEnd("tool_use"),
    ]


def test_interleaved_parallel_tool_calls_are_serialised():
    def call(index, **fields):
        return {"index": index, **fields}

    events = run_parser(
        [
            chunk(
                {
                    "tool_calls": [
                        call(0, id="call_a", function={"name": "a", "arguments": ""}),
                        call(1, id="call_b", function={"name": "b", "arguments": ""}),
                    ]
                }
            ),
            chunk({"tool_calls": [call(0, function={"arguments": '{"p":'})]}),
            chunk({"tool_calls": [call(1, function={"arguments": '{"q":'})]}),
            chunk(
                {
                    "tool_calls": [
                        call(0, function={"arguments": "1}"}),
                        call(1, function={"arguments": "2"}),
                    ]
                }
            ),
            chunk({"tool_calls": [call(1, function={"arguments": "}"})]}),
            chunk({}, "tool_calls"),
            DONE,
        ]
    )
    assert events[1:] == [
        ToolCallStart(0, "call_a", "a"),
        ToolCallDelta(0, '{"p":'),
        ToolCallDelta(0, "1}"),
        BlockStop(0),
        ToolCallStart(1, "call_b", "b"),
        ToolCallDelta(1, '{"q":2'),
        ToolCallDelta(1, "}"),
        BlockStop(1),
        MessageEnd("tool_use"),
    ]


def test_whole_tool_calls_in_one_chunk_and_missing_ids():
    events = run_parser(
        [
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "function": {"name": "a", "arguments": '{"x":1}'}},
                        {"index": 1, "id": "call_b", "function": {"name": "b", "arguments": "{}"}},
                    ]
                }
            ),
            chunk({}, "stop"),  # Ollama: tool calls end with "stop"
            DONE,
        ]
    )
    assert events[1:] == [
        ToolCallStart(0, "call_chatcmpl-123_0", "a"),
        ToolCallDelta(0, '{"x":1}'),
        BlockStop(0),
        ToolCallStart(1, "call_b", "b"),
        ToolCallDelta(1, "{}"),
        BlockStop(1),
        MessageEnd("tool_use"),
    ]


def test_arguments_after_a_completed_call_are_refused():
    parser = chat.StreamParser()
    parser.feed(
        chunk(
            {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "a", "arguments": "{}"}}]}
        )
    )
    parser.feed(
        chunk(
            {"tool_calls": [{"index": 1, "id": "b", "function": {"name": "b", "arguments": "{}"}}]}
        )
    )
    assert parser.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": " "}}]})) == []
    with pytest.raises(UpstreamFormatError):
        parser.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "x"}}]}))


def test_refusal_delta_is_text_and_vllm_stop_string():
    events = run_parser(
        [
            chunk({"refusal": "No."}),
            sse_json(
                {
                    "id": "x",
                    "model": "m",
                    "choices": [
                        {"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END"}
                    ],
                }
            ),
            DONE,
        ]
    )
    assert TextDelta(0, "No.") in events
    assert events[-1] == MessageEnd("stop_sequence", "END")


@pytest.mark.parametrize(
    "event",
    [
        SSE(data="not json"),
        SSE(data="[1]"),
        SSE(data='{"error": {"message": "overloaded"}}'),
        SSE(data='{"id": "x", "choices": {}}'),
        SSE(data='{"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": {}}}]}'),
    ],
)
def test_stream_parser_refuses_garbage(event):
    with pytest.raises(UpstreamFormatError):
        chat.StreamParser().feed(event)


def test_stream_parser_ignores_empty_data_and_other_choices():
    parser = chat.StreamParser()
    assert parser.feed(SSE(data="")) == []
    events = parser.feed(
        sse_json({"id": "x", "model": "m", "choices": [{"index": 1, "delta": {"content": "no"}}]})
    )
    assert events == [MessageStart("x", "m")]


# --- StreamRenderer (caller side) ----------------------------------------------------------------


def test_render_stream_frames_exactly():
    request = ChatRequest(model="gpt-4o", messages=[], stream=True)
    frames = render_stream(
        request,
        [
            MessageStart("up", "upstream"),
            TextStart(0),
            TextDelta(0, "Hi"),
            BlockStop(0),
            ToolCallStart(1, "call_9", "f"),
            ToolCallDelta(1, '{"a"'),
            ToolCallDelta(1, ":1}"),
            BlockStop(1),
            MessageEnd("tool_use", usage=Usage(input_tokens=1, output_tokens=2)),
        ],
    )
    assert frames[0] == (
        b'data: {"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"",'
        b'"refusal":null},"logprobs":null,"finish_reason":null}]}\n\n'
    )
    assert frames[-1] == b"data: [DONE]\n\n"
    chunks = [sse.json() for sse in parse_sse(frames[:-1])]
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        ("chatcmpl-abc", "chat.completion.chunk", 1700000000, "gpt-4o")
    }
    assert [c["choices"] for c in chunks[1:]] == [
        [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        for delta, finish in [
            ({"content": "Hi"}, None),
            (
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ]
                },
                None,
            ),
            ({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}, None),
            ({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, None),
            ({}, "tool_calls"),
        ]
    ]


def test_render_stream_usage_chunk_only_when_asked():
    events = [
        MessageStart("u", "m"),
        TextStart(0),
        TextDelta(0, "x"),
        BlockStop(0),
        MessageEnd("end_turn", usage=Usage(input_tokens=3, output_tokens=4, cache_read_tokens=2)),
    ]
    without = [
        json.loads(e.data)
        for e in parse_sse(render_stream(ChatRequest("m", [], stream=True), events))[:-1]
    ]
    assert all(chunk["choices"] for chunk in without)
    assert all("usage" not in chunk for chunk in without)

    with_usage = [
        json.loads(e.data)
        for e in parse_sse(
            render_stream(ChatRequest("m", [], stream=True, stream_usage=True), events)
        )[:-1]
    ]
    assert all(chunk["usage"] is None for chunk in with_usage[:-1])
    assert with_usage[-1]["choices"] == []
    assert with_usage[-1]["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 4,
        "total_tokens": 9,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert with_usage[-2]["choices"][0]["finish_reason"] == "stop"


def test_render_stream_tool_index_counts_tool_calls_only():
    frames = render_stream(
        ChatRequest("m", []),
        [
            MessageStart("u", "m"),
            TextStart(0),
            TextDelta(0, "a"),
            BlockStop(0),
            ToolCallStart(1, "toolu_1", "f"),
            BlockStop(1),
            ToolCallStart(2, "", "g"),
            ToolCallDelta(2, "{}"),
            BlockStop(2),
            MessageEnd("tool_use"),
        ],
        response_id="msg_01",
    )
    chunks = [json.loads(e.data) for e in parse_sse(frames)[:-1]]
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert [c["index"] for c in calls] == [0, 1, 1]
    assert calls[0]["id"] == "call_toolu_1"
    assert calls[1]["id"] == "call_msg_01_1"
    assert chunks[0]["id"] == "chatcmpl-msg_01"


def test_render_stream_model_falls_back_to_upstream_and_start_is_implicit():
    frames = render_stream(ChatRequest("", []), [TextDelta(0, "x"), MessageEnd("max_tokens")])
    chunks = [json.loads(e.data) for e in parse_sse(frames)[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    renderer = chat.StreamRenderer(ChatRequest("", []), "r", 1)
    renderer.feed(MessageStart("u", "upstream-model"))
    assert (
        json.loads(parse_sse(renderer.feed(TextDelta(0, "x")))[0].data)["model"] == "upstream-model"
    )


def test_render_stream_fail():
    renderer = chat.StreamRenderer(ChatRequest("m", []), "r", 1)
    renderer.feed(TextDelta(0, "partial"))
    frames = renderer.fail("The upstream stopped answering.")
    assert parse_sse(frames)[0].json() == {
        "error": {
            "message": "The upstream stopped answering.",
            "type": "api_error",
            "param": None,
            "code": "upstream_error",
        }
    }
    assert frames[-1] == b"data: [DONE]\n\n"
    assert renderer.feed(TextDelta(0, "more")) == []


def test_render_stream_finish_ends_the_message_once():
    renderer = chat.StreamRenderer(ChatRequest("m", []), "r", 1)
    renderer.feed(TextDelta(0, "x"))
    frames = renderer.finish()
    assert parse_sse(frames)[-2].json()["choices"][0]["finish_reason"] == "stop"
    assert frames[-1] == b"data: [DONE]\n\n"
    assert renderer.finish() == []
    assert renderer.fail("late") == []


# --- Stream round trips: renderer bytes -> SSE -> parser -----------------------------------------


def rich_stream(text: str, calls: list[tuple[str, str, str]], stop="tool_use", usage=None) -> list:
    events: list = [MessageStart("chatcmpl-rt", "m"), TextStart(0)]
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


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_round_trip(include_usage):
    usage = Usage(input_tokens=100, output_tokens=40, cache_read_tokens=60, reasoning_tokens=8)
    events = rich_stream("Let me check the weather and time for you.", CALLS, usage=usage)
    request = ChatRequest("m", [], stream=True, stream_usage=include_usage)
    parsed = run_parser(parse_sse(render_stream(request, events, "chatcmpl-rt")))
    expected = [*events[:-1], MessageEnd("tool_use", usage=usage if include_usage else Usage())]
    assert parsed == expected


def test_stream_round_trip_max_tokens():
    events = rich_stream(
        "The answer is cut sh", [], stop="max_tokens", usage=Usage(input_tokens=5, output_tokens=7)
    )
    request = ChatRequest("m", [], stream=True, stream_usage=True)
    assert run_parser(parse_sse(render_stream(request, events, "chatcmpl-rt"))) == events
