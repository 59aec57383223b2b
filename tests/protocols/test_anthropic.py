"""The Anthropic Messages codec: documented requests, answers and streams; both sides against
each other; every validation error with its param."""

import json

import pytest

from generation.protocols import anthropic
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
from tests.protocols import PNG, WEATHER

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": WEATHER,
}


def sse_events(text: str) -> list[SSE]:
    """Split SSE wire text into events, as an SSE client would."""
    events = []
    for frame in text.strip().split("\n\n"):
        event, data = "", []
        for line in frame.splitlines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        events.append(SSE(data="\n".join(data), event=event))
    return events


def frames_to_events(frames: list[bytes]) -> list[SSE]:
    assert all(frame.endswith(b"\n\n") for frame in frames)
    return sse_events(b"".join(frames).decode())


def parse_stream(text: str) -> list:
    parser = anthropic.StreamParser()
    events = [event for sse in sse_events(text) for event in parser.feed(sse)]
    return events + parser.close()


def render_stream(events, request=None, response_id="01TEST") -> list[bytes]:
    request = request or ChatRequest(model="claude-sonnet-4-5", messages=[])
    renderer = anthropic.StreamRenderer(request, response_id, 1700000000)
    frames = [frame for event in events for frame in renderer.feed(event)]
    return frames + renderer.finish()


def body(**fields) -> dict:
    base = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, world"}],
    }
    return {**base, **fields}


# --- Caller side: requests ---------------------------------------------------------------------


def test_documented_basic_request():
    request = anthropic.parse_request(body())
    assert request == ChatRequest(
        model="claude-sonnet-4-5",
        messages=[Message("user", [TextPart("Hello, world")])],
        max_tokens=1024,
    )


def test_system_string_and_text_blocks():
    assert anthropic.parse_request(body(system="You are terse.")).system == "You are terse."
    blocks = [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}},
    ]
    assert anthropic.parse_request(body(system=blocks)).system == (
        "You are terse.\n\nAnswer in French."
    )


def test_multi_turn_with_prefill_and_consecutive_same_role():
    messages = [
        {"role": "user", "content": "Hello there."},
        {"role": "user", "content": [{"type": "text", "text": "Still there?"}]},
        {"role": "assistant", "content": "Hi, I'm Claude. How can I help you?"},
        {"role": "user", "content": "Can you explain LLMs in plain English?"},
        {"role": "assistant", "content": "The best answer is ("},
    ]
    request = anthropic.parse_request(body(messages=messages))
    assert [message.role for message in request.messages] == [
        "user",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert request.messages[1].parts == [TextPart("Still there?")]
    assert request.messages[4].parts == [TextPart("The best answer is (")]


def test_images_base64_and_url():
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "Compare these images."},
    ]
    request = anthropic.parse_request(body(messages=[{"role": "user", "content": content}]))
    assert request.messages[0].parts == [
        ImagePart(media_type="image/png", data=PNG),
        ImagePart(url="https://example.com/cat.jpg"),
        TextPart("Compare these images."),
    ]


def test_documented_tool_use_conversation():
    messages = [
        {"role": "user", "content": "What's the weather like in San Francisco?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll check the weather."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather",
                    "input": {"location": "San Francisco, CA", "unit": "celsius"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                    "content": "15 degrees",
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    request = anthropic.parse_request(
        body(messages=messages, tools=[WEATHER_TOOL], tool_choice={"type": "auto"})
    )
    assert request.tools == [
        Tool(
            name="get_weather",
            description="Get the current weather in a given location",
            parameters=WEATHER_TOOL["input_schema"],
        )
    ]
    assert request.tool_choice == "auto"
    call = request.messages[1].parts[1]
    assert call == ToolCall(
        id="toolu_01A09q90qw90lq917835lq9",
        name="get_weather",
        arguments=json.dumps({"location": "San Francisco, CA", "unit": "celsius"}),
    )
    assert json.loads(call.arguments) == {"location": "San Francisco, CA", "unit": "celsius"}
    assert request.messages[2].parts == [
        ToolResult(
            tool_call_id="toolu_01A09q90qw90lq917835lq9",
            content=[TextPart("15 degrees")],
            name="get_weather",
        ),
        TextPart("And tomorrow?"),
    ]


def test_tool_result_with_blocks_and_error():
    messages = [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "snap", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [
                        {"type": "text", "text": "camera offline"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                    "is_error": True,
                },
                {"type": "tool_result", "tool_use_id": "toolu_unknown"},
            ],
        },
    ]
    parts = anthropic.parse_request(body(messages=messages)).messages[1].parts
    assert parts == [
        ToolResult(
            tool_call_id="toolu_1",
            content=[TextPart("camera offline"), ImagePart(media_type="image/png", data=PNG)],
            name="snap",
            is_error=True,
        ),
        ToolResult(tool_call_id="toolu_unknown"),
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, ("auto", "")),
        ({"type": "any"}, ("required", "")),
        ({"type": "tool", "name": "get_weather"}, ("tool", "get_weather")),
        ({"type": "none"}, ("none", "")),
        ({"type": "auto", "disable_parallel_tool_use": True}, ("auto", "")),
    ],
)
def test_tool_choice(choice, expected):
    request = anthropic.parse_request(body(tools=[WEATHER_TOOL], tool_choice=choice))
    assert (request.tool_choice, request.tool_choice_name) == expected


def test_sampling_and_other_parameters():
    request = anthropic.parse_request(
        body(
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            stop_sequences=["\n\nHuman:", "END"],
            stream=True,
            metadata={"user_id": "13803d75-b4b5-4c3e-b2a2-6f21399b021b"},
            thinking={"type": "enabled", "budget_tokens": 2048},
            tools=[{**WEATHER_TOOL, "type": "custom"}],
        )
    )
    assert request.temperature == 0.5
    assert request.top_p == 0.9
    assert request.stop == ["\n\nHuman:", "END"]
    assert request.stream is True
    assert request.user == "13803d75-b4b5-4c3e-b2a2-6f21399b021b"
    assert request.tools[0].name == "get_weather"


def test_thinking_blocks_in_history_are_dropped():
    messages = [
        {"role": "user", "content": "What is 27 * 453?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "27 * 453 = 12231", "signature": "EqQBCgIY"},
                {"type": "redacted_thinking", "data": "EmwKAhgB"},
                {"type": "text", "text": "12231"},
            ],
        },
    ]
    request = anthropic.parse_request(body(messages=messages))
    assert request.messages[1].parts == [TextPart("12231")]


def test_max_tokens_zero_prewarms_the_cache_and_is_passed_on():
    request = anthropic.parse_request(body(max_tokens=0))
    assert request.max_tokens == 0
    assert anthropic.upstream_request(request, "claude").body["max_tokens"] == 0


def test_model_from_the_body_wins_over_the_keyword():
    assert anthropic.parse_request(body(), model="other").model == "claude-sonnet-4-5"
    without = {k: v for k, v in body().items() if k != "model"}
    assert anthropic.parse_request(without, model="from-route").model == "from-route"


# --- Validation --------------------------------------------------------------------------------


def _with_message(content, role="user"):
    return body(messages=[{"role": role, "content": content}])


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({k: v for k, v in body().items() if k != "model"}, "model"),
        (body(model=7), "model"),
        (body(model=""), "model"),
        ({k: v for k, v in body().items() if k != "max_tokens"}, "max_tokens"),
        (body(max_tokens="1024"), "max_tokens"),
        (body(max_tokens=True), "max_tokens"),
        (body(max_tokens=-1), "max_tokens"),
        (body(max_tokens=10**12), "max_tokens"),
        ({k: v for k, v in body().items() if k != "messages"}, "messages"),
        (body(messages=[]), "messages"),
        (body(messages="hi"), "messages"),
        (body(messages=["hi"]), "messages[0]"),
        (body(messages=[{"content": "hi"}]), "messages[0].role"),
        (body(messages=[{"role": "system", "content": "hi"}]), "messages[0].role"),
        (body(messages=[{"role": "user"}]), "messages[0].content"),
        (_with_message(42), "messages[0].content"),
        (_with_message([{"text": "hi"}]), "messages[0].content[0].type"),
        (_with_message([{"type": "video"}]), "messages[0].content[0].type"),
        (_with_message([{"type": "document"}]), "messages[0].content[0].type"),
        (_with_message([{"type": "text"}]), "messages[0].content[0].text"),
        (_with_message([{"type": "image"}]), "messages[0].content[0].source"),
        (
            _with_message([{"type": "image", "source": {"type": "base64", "data": PNG}}]),
            "messages[0].content[0].source.media_type",
        ),
        (
            _with_message(
                [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/tiff", "data": PNG},
                    }
                ]
            ),
            "messages[0].content[0].source.media_type",
        ),
        (
            _with_message(
                [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "@@!"},
                    }
                ]
            ),
            "messages[0].content[0].source.data",
        ),
        (
            _with_message([{"type": "image", "source": {"type": "url", "url": "ftp://x/y.png"}}]),
            "messages[0].content[0].source.url",
        ),
        (
            _with_message([{"type": "image", "source": {"type": "file", "file_id": "file_1"}}]),
            "messages[0].content[0].source.type",
        ),
        (
            _with_message([{"type": "image", "source": {"type": "gcs", "uri": "x"}}]),
            "messages[0].content[0].source.type",
        ),
        (
            _with_message([{"type": "tool_use", "id": "t", "name": "f", "input": {}}]),
            "messages[0].content[0].type",
        ),
        (
            _with_message([{"type": "tool_result", "tool_use_id": "t"}], role="assistant"),
            "messages[0].content[0].type",
        ),
        (
            _with_message([{"type": "tool_use", "name": "f", "input": {}}], role="assistant"),
            "messages[0].content[0].id",
        ),
        (
            _with_message(
                [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}], "assistant"
            ),
            "messages[0].content[0].input",
        ),
        (_with_message([{"type": "tool_result"}]), "messages[0].content[0].tool_use_id"),
        (
            _with_message([{"type": "tool_result", "tool_use_id": "t", "content": 3}]),
            "messages[0].content[0].content",
        ),
        (
            _with_message(
                [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]}]
            ),
            "messages[0].content[0].content[0].type",
        ),
        (
            _with_message([{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}]),
            "messages[0].content[0].is_error",
        ),
        (body(system=42), "system"),
        (body(system=[{"type": "image"}]), "system[0].type"),
        (body(system=[{"type": "text"}]), "system[0].text"),
        (body(temperature=1.5), "temperature"),
        (body(temperature=-0.1), "temperature"),
        (body(temperature="hot"), "temperature"),
        (body(top_p=2), "top_p"),
        (body(top_k=-1), "top_k"),
        (body(stop_sequences="END"), "stop_sequences"),
        (body(stop_sequences=["END", 5]), "stop_sequences[1]"),
        (body(stream="yes"), "stream"),
        (body(metadata="x"), "metadata"),
        (body(metadata={"user_id": 5}), "metadata.user_id"),
        (body(thinking=True), "thinking"),
        (body(tools={"name": "x"}), "tools"),
        (body(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools[0].type"),
        (
            body(tools=[WEATHER_TOOL, {"type": "computer_20250124", "name": "computer"}]),
            "tools[1].type",
        ),
        (body(tools=[{"input_schema": {}}]), "tools[0].name"),
        (body(tools=[{"name": "f"}]), "tools[0].input_schema"),
        (body(tools=[{"name": "f", "input_schema": {}, "description": 1}]), "tools[0].description"),
        (body(tool_choice="auto"), "tool_choice"),
        (body(tool_choice={"type": "required"}), "tool_choice.type"),
        (body(tool_choice={"type": "tool"}), "tool_choice.name"),
    ],
)
def test_validation_errors_name_the_field(payload, param):
    with pytest.raises(ProtocolError) as caught:
        anthropic.parse_request(payload)
    assert caught.value.param == param
    # Worded like Anthropic's own errors: the dotted path first.
    assert caught.value.message.startswith(param.replace("[", ".").replace("]", "") + ":")


def test_body_must_be_an_object():
    with pytest.raises(ProtocolError):
        anthropic.parse_request(["not", "an", "object"])


def test_error_messages_read_like_anthropic():
    with pytest.raises(ProtocolError, match=r"^max_tokens: Field required$"):
        anthropic.parse_request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(ProtocolError, match="less than or equal to 1"):
        anthropic.parse_request(body(temperature=1.5))
    with pytest.raises(ProtocolError, match="Unknown tool type 'web_search_20250305'"):
        anthropic.parse_request(body(tools=[{"type": "web_search_20250305", "name": "w"}]))
    with pytest.raises(ProtocolError, match=r"^messages\.0\.content\.0\.source\.data: "):
        anthropic.parse_request(
            _with_message(
                [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "!!"},
                    }
                ]
            )
        )


# --- Caller side: responses --------------------------------------------------------------------


def test_render_text_response_field_by_field():
    request = ChatRequest(model="claude-sonnet-4-5", messages=[])
    response = ChatResponse(
        id="01JXYZ",
        model="upstream-model-name",
        content=[TextPart("Hi! My name is Claude.")],
        stop_reason="end_turn",
        usage=Usage(
            input_tokens=2095, output_tokens=503, cache_read_tokens=7, cache_write_tokens=9
        ),
    )
    rendered = anthropic.render_response(response, request)
    assert rendered == {
        "id": "msg_01JXYZ",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hi! My name is Claude."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 2095,
            "output_tokens": 503,
            "cache_creation_input_tokens": 9,
            "cache_read_input_tokens": 7,
        },
    }


def test_render_tool_use_with_protocol_ids():
    request = ChatRequest(model="claude", messages=[])
    response = ChatResponse(
        id="msg_abc",
        model="m",
        content=[
            TextPart("Checking."),
            ToolCall("call_X1", "get_weather", '{"location": "Paris"}'),
            ToolCall("toolu_kept", "get_time", ""),
            ToolCall("call_X2", "broken", "not json"),
        ],
        stop_reason="tool_use",
    )
    rendered = anthropic.render_response(response, request)
    assert rendered["id"] == "msg_abc"
    assert rendered["stop_reason"] == "tool_use"
    assert rendered["content"][1:] == [
        {
            "type": "tool_use",
            "id": "toolu_abc_0",
            "name": "get_weather",
            "input": {"location": "Paris"},
        },
        {"type": "tool_use", "id": "toolu_kept", "name": "get_time", "input": {}},
        {
            "type": "tool_use",
            "id": "toolu_abc_2",
            "name": "broken",
            "input": {"arguments": "not json"},
        },
    ]


@pytest.mark.parametrize(
    ("stop_reason", "stop_sequence", "expected"),
    [
        ("end_turn", "", ("end_turn", None)),
        ("max_tokens", "", ("max_tokens", None)),
        ("stop_sequence", "END", ("stop_sequence", "END")),
        ("tool_use", "", ("tool_use", None)),
        ("content_filter", "", ("refusal", None)),
    ],
)
def test_render_stop_reasons(stop_reason, stop_sequence, expected):
    response = ChatResponse(id="r", model="m", stop_reason=stop_reason, stop_sequence=stop_sequence)
    rendered = anthropic.render_response(response, ChatRequest(model="c", messages=[]))
    assert (rendered["stop_reason"], rendered["stop_sequence"]) == expected


def test_tool_calls_under_a_plain_stop_are_reported_as_tool_use():
    # Some upstreams (OpenAI-compatible ones, Gemini) end a tool turn with a plain stop.
    response = ChatResponse(id="r", model="m", content=[ToolCall("c", "f", "{}")])
    rendered = anthropic.render_response(response, ChatRequest(model="c", messages=[]))
    assert rendered["stop_reason"] == "tool_use"
    frames = render_stream([ToolCallStart(0, "c", "f"), BlockStop(0), MessageEnd("end_turn")])
    delta = next(sse.json() for sse in frames_to_events(frames) if sse.event == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"


# --- Upstream side: responses ------------------------------------------------------------------


def test_parse_documented_response():
    documented = {
        "content": [{"text": "Hi! My name is Claude.", "type": "text"}],
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "model": "claude-sonnet-4-5-20250929",
        "role": "assistant",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "type": "message",
        "usage": {"input_tokens": 2095, "output_tokens": 503},
    }
    assert anthropic.parse_response(documented) == ChatResponse(
        id="msg_013Zva2CMHLNnXjNJJKqJ2EF",
        model="claude-sonnet-4-5-20250929",
        content=[TextPart("Hi! My name is Claude.")],
        stop_reason="end_turn",
        usage=Usage(input_tokens=2095, output_tokens=503),
    )


def test_parse_tool_use_response_with_thinking_and_cache_usage():
    answer = {
        "id": "msg_01Aq9w938a90dw8q",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-1",
        "content": [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": "Eq"},
            {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "get_weather",
                "input": {"location": "San Francisco, CA", "unit": "celsius"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 50,
            "output_tokens": 80,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 2000,
            "service_tier": "standard",
        },
    }
    response = anthropic.parse_response(answer)
    assert response.content == [
        TextPart("I'll check the current weather in San Francisco for you."),
        ToolCall(
            "toolu_01A09q90qw90lq917835lq9",
            "get_weather",
            json.dumps({"location": "San Francisco, CA", "unit": "celsius"}),
        ),
    ]
    assert response.stop_reason == "tool_use"
    # SPEC §5: Anthropic input_tokens already excludes the cache.
    assert response.usage == Usage(
        input_tokens=50, output_tokens=80, cache_read_tokens=2000, cache_write_tokens=1000
    )
    assert response.usage.total_input == 3050


@pytest.mark.parametrize(
    ("stop_reason", "stop_sequence", "expected"),
    [
        ("end_turn", None, ("end_turn", "")),
        ("max_tokens", None, ("max_tokens", "")),
        ("stop_sequence", "END", ("stop_sequence", "END")),
        ("tool_use", None, ("tool_use", "")),
        ("refusal", None, ("content_filter", "")),
        ("pause_turn", None, ("end_turn", "")),
        ("model_context_window_exceeded", None, ("max_tokens", "")),
        (None, None, ("end_turn", "")),
    ],
)
def test_parse_stop_reasons(stop_reason, stop_sequence, expected):
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    response = anthropic.parse_response(answer)
    assert (response.stop_reason, response.stop_sequence) == expected


@pytest.mark.parametrize(
    "answer",
    [
        [],
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        {"type": "completion", "completion": "hi"},
        {"type": "message", "content": "hi"},
        {"type": "message", "content": ["hi"]},
    ],
)
def test_parse_response_refuses_what_is_not_a_message(answer):
    with pytest.raises(UpstreamFormatError):
        anthropic.parse_response(answer)


def test_parse_response_error_keeps_upstream_message():
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamFormatError, match="overloaded_error: Overloaded"):
        anthropic.parse_response(error)


# --- Upstream side: requests -------------------------------------------------------------------


def test_upstream_request_body():
    request = ChatRequest(
        model="caller-alias",
        messages=[
            Message("user", [TextPart("What's the weather?"), ImagePart(url="https://x/y.png")]),
            Message(
                "assistant",
                [TextPart(""), ToolCall("call:abc/1", "get_weather", '{"location": "Paris"}')],
            ),
            Message("user", [ToolResult("call:abc/1", [TextPart("15 C")], "get_weather")]),
            Message("user", [TextPart("Thanks")]),
        ],
        system="Be brief.",
        tools=[Tool("get_weather", "Weather", {"type": "object"}), Tool("noop")],
        tool_choice="tool",
        tool_choice_name="get_weather",
        max_tokens=100,
        temperature=1.7,
        top_p=0.5,
        stop=["END"],
        stream=True,
        user="user-1",
    )
    call = anthropic.upstream_request(request, "claude-sonnet-4-5-20250929")
    assert call.path == "/v1/messages"
    assert call.stream is True
    assert call.params == {}
    assert call.body == {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 100,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What's the weather?"},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_abc_1",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_abc_1", "content": "15 C"},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "system": "Be brief.",
        "temperature": 1.0,
        "top_p": 0.5,
        "stop_sequences": ["END"],
        "tools": [
            {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}},
            {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "metadata": {"user_id": "user-1"},
        "stream": True,
    }


def test_upstream_request_defaults():
    request = ChatRequest(model="m", messages=[Message("user", [TextPart("Hi")])])
    call = anthropic.upstream_request(request, "claude-haiku")
    assert call.body == {
        "model": "claude-haiku",
        "max_tokens": anthropic.DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }
    assert call.stream is False


def test_upstream_tool_results_go_first_and_carry_errors_and_images():
    result = ToolResult(
        "toolu_1",
        [TextPart("no signal"), ImagePart(media_type="image/png", data=PNG)],
        "snap",
        is_error=True,
    )
    request = ChatRequest(
        model="m",
        messages=[
            Message("assistant", [ToolCall("toolu_1", "snap")]),
            Message("user", [TextPart("Here:"), result, ToolResult("toolu_2")]),
        ],
    )
    content = anthropic.upstream_request(request, "claude").body["messages"][1]["content"]
    assert content == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [
                {"type": "text", "text": "no signal"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
            ],
            "is_error": True,
        },
        {"type": "tool_result", "tool_use_id": "toolu_2"},
        {"type": "text", "text": "Here:"},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"})],
)
def test_upstream_tool_choice(choice, expected):
    request = ChatRequest(
        model="m",
        messages=[Message("user", [TextPart("x")])],
        tools=[Tool("f")],
        tool_choice=choice,
    )
    assert anthropic.upstream_request(request, "c").body["tool_choice"] == expected


# --- Round trips -------------------------------------------------------------------------------


def full_request() -> ChatRequest:
    return ChatRequest(
        model="claude-upstream",
        messages=[
            Message(
                "user",
                [
                    TextPart("Look:"),
                    ImagePart(media_type="image/png", data=PNG),
                    ImagePart(url="https://example.com/a.jpg"),
                ],
            ),
            Message(
                "assistant",
                [
                    TextPart("Two calls."),
                    ToolCall("toolu_1", "get_weather", json.dumps({"location": "Paris"})),
                    ToolCall("toolu_2", "get_time", json.dumps({})),
                ],
            ),
            Message(
                "user",
                [
                    ToolResult("toolu_1", [TextPart("15 C")], "get_weather"),
                    ToolResult(
                        "toolu_2",
                        [TextPart("failed"), ImagePart(url="https://example.com/e.png")],
                        "get_time",
                        is_error=True,
                    ),
                    TextPart("Summarise."),
                ],
            ),
        ],
        system="You are terse.",
        tools=[Tool("get_weather", "Weather", WEATHER_TOOL["input_schema"]), Tool("get_time")],
        tool_choice="required",
        max_tokens=512,
        temperature=0.3,
        top_p=0.8,
        stop=["END"],
        stream=True,
        user="u-42",
    )


def test_round_trip_request_through_the_wire():
    original = full_request()
    call = anthropic.upstream_request(original, "claude-upstream")
    assert anthropic.parse_request(json.loads(json.dumps(call.body))) == original


def test_round_trip_response_through_the_wire():
    original = ChatResponse(
        id="msg_01",
        model="claude",
        content=[TextPart("Hello"), ToolCall("toolu_1", "f", json.dumps({"a": [1, 2]}))],
        stop_reason="tool_use",
        usage=Usage(input_tokens=10, output_tokens=5, cache_read_tokens=3, cache_write_tokens=2),
    )
    rendered = anthropic.render_response(original, ChatRequest(model="claude", messages=[]))
    assert anthropic.parse_response(json.loads(json.dumps(rendered))) == original

    stopped = ChatResponse(id="msg_02", model="c", stop_reason="stop_sequence", stop_sequence="##")
    rendered = anthropic.render_response(stopped, ChatRequest(model="c", messages=[]))
    assert anthropic.parse_response(rendered) == stopped


# --- Streams: parsing documented streams -------------------------------------------------------

DOCUMENTED_TEXT_STREAM = """
event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-6", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}
"""  # noqa: E501

DOCUMENTED_TOOL_STREAM = r"""
event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-opus-4-6","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let's check the weather for San Francisco, CA:"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisc"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o,"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" CA\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"unit\": \"fah"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}
"""  # noqa: E501

DOCUMENTED_THINKING_STREAM = r"""
event: message_start
data: {"type": "message_start", "message": {"id": "msg_01Vy2jT7yTkB6ZgxNEdmMYS7", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-6", "stop_reason": null, "stop_sequence": null}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\n\n1071 = 2 * 462 + 147"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: content_block_start
data: {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "The greatest common divisor of 1071 and 462 is **21**."}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 1}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}}

event: message_stop
data: {"type": "message_stop"}
"""  # noqa: E501


def test_parse_documented_text_stream():
    assert parse_stream(DOCUMENTED_TEXT_STREAM) == [
        MessageStart(
            "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "claude-opus-4-6",
            Usage(input_tokens=25),
        ),
        TextStart(0),
        TextDelta(0, "Hello"),
        TextDelta(0, "!"),
        BlockStop(0),
        MessageEnd("end_turn", "", Usage(input_tokens=25, output_tokens=15)),
    ]


def test_parse_documented_tool_use_stream():
    events = parse_stream(DOCUMENTED_TOOL_STREAM)
    assert events[0] == MessageStart(
        "msg_014p7gG3wDgGV9EUtLvnow3U", "claude-opus-4-6", Usage(input_tokens=472)
    )
    assert events[1:5] == [
        TextStart(0),
        TextDelta(0, "Okay"),
        TextDelta(0, ", let's check the weather for San Francisco, CA:"),
        BlockStop(0),
    ]
    assert events[5] == ToolCallStart(1, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather")
    deltas = [event for event in events if isinstance(event, ToolCallDelta)]
    assert len(deltas) == 8  # the empty partial_json is not an event
    arguments = json.loads("".join(delta.arguments for delta in deltas))
    assert arguments == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert events[-2:] == [
        BlockStop(1),
        MessageEnd("tool_use", "", Usage(input_tokens=472, output_tokens=89)),
    ]


def test_parse_documented_thinking_stream_drops_thinking_and_renumbers():
    assert parse_stream(DOCUMENTED_THINKING_STREAM) == [
        MessageStart("msg_01Vy2jT7yTkB6ZgxNEdmMYS7", "claude-opus-4-6", Usage()),
        TextStart(0),
        TextDelta(0, "The greatest common divisor of 1071 and 462 is **21**."),
        BlockStop(0),
        MessageEnd("end_turn", "", Usage()),
    ]


def test_parse_stream_stop_sequence_cache_usage_and_late_input_tokens():
    stream = """
event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":20,"cache_read_input_tokens":30,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":"Pre"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"fix"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"###"},"usage":{"input_tokens":11,"output_tokens":7}}

event: some_future_event
data: {"type":"some_future_event"}

event: message_stop
data: {"type":"message_stop"}
"""  # noqa: E501
    events = parse_stream(stream)
    assert events[0].usage == Usage(input_tokens=10, cache_read_tokens=30, cache_write_tokens=20)
    assert events[1:4] == [TextStart(0), TextDelta(0, "Pre"), TextDelta(0, "fix")]
    assert events[-1] == MessageEnd(
        "stop_sequence",
        "###",
        Usage(input_tokens=11, output_tokens=7, cache_read_tokens=30, cache_write_tokens=20),
    )


def test_stream_error_event_raises_with_the_upstream_message():
    parser = anthropic.StreamParser()
    parser.feed(sse_events(DOCUMENTED_TEXT_STREAM)[0])
    error = SSE(
        event="error",
        data='{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
    )
    with pytest.raises(UpstreamFormatError, match="overloaded_error: Overloaded"):
        parser.feed(error)


def test_stream_cut_before_the_end_raises():
    parser = anthropic.StreamParser()
    for sse in sse_events(DOCUMENTED_TEXT_STREAM)[:4]:
        parser.feed(sse)
    with pytest.raises(UpstreamFormatError):
        parser.close()


def test_stream_missing_only_message_stop_still_ends():
    parser = anthropic.StreamParser()
    events = [e for sse in sse_events(DOCUMENTED_TEXT_STREAM)[:-1] for e in parser.feed(sse)]
    assert not any(isinstance(event, MessageEnd) for event in events)
    assert parser.close() == [MessageEnd("end_turn", "", Usage(input_tokens=25, output_tokens=15))]
    assert parser.close() == []


@pytest.mark.parametrize(
    "sse",
    [
        SSE(data="not json", event="message_start"),
        SSE(data="[1]", event="message_start"),
        SSE(data='{"type":"message_start"}', event="message_start"),
    ],
)
def test_stream_garbage_raises(sse):
    with pytest.raises(UpstreamFormatError):
        anthropic.StreamParser().feed(sse)


# --- Streams: rendering ------------------------------------------------------------------------


def test_render_stream_exact_sequence():
    frames = render_stream(
        [
            MessageStart("upstream-id", "upstream-model", Usage(input_tokens=25)),
            TextStart(0),
            TextDelta(0, "Hello"),
            TextDelta(0, "!"),
            BlockStop(0),
            MessageEnd("end_turn", usage=Usage(input_tokens=25, output_tokens=15)),
        ]
    )
    usage_start = {
        "input_tokens": 25,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    expected = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01TEST",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage_start,
                },
            },
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hello"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "!"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {**usage_start, "output_tokens": 15},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert [(sse.event, sse.json()) for sse in frames_to_events(frames)] == expected


def test_render_stream_tool_calls_renumbered_and_closed():
    frames = render_stream(
        [
            MessageStart("x", "m"),
            ToolCallStart(3, "call_a", "get_weather"),
            ToolCallDelta(3, '{"loc'),
            ToolCallDelta(3, '":"Paris"}'),
            # The next block starts without a BlockStop: the renderer closes the first.
            ToolCallStart(4, "toolu_b", "get_time"),
            ToolCallDelta(4, ""),
            BlockStop(4),
            BlockStop(4),
            MessageEnd("tool_use", usage=Usage(input_tokens=3, output_tokens=4)),
        ],
        response_id="msg_R",
    )
    events = [(sse.event, sse.json()) for sse in frames_to_events(frames)]
    kinds = [event for event, _ in events]
    assert kinds == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[2][1]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_R_0",
        "name": "get_weather",
        "input": {},
    }
    assert events[2][1]["index"] == 0
    assert events[3][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"loc'}
    assert events[6][1]["index"] == 1
    assert events[6][1]["content_block"]["id"] == "toolu_b"
    assert events[8][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


def test_render_stream_without_message_start_or_end_is_still_well_formed():
    frames = render_stream([TextDelta(0, "orphan")])
    kinds = [sse.event for sse in frames_to_events(frames)]
    assert kinds == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_render_stream_takes_input_tokens_from_start_when_end_lacks_them():
    frames = render_stream(
        [MessageStart("x", "m", Usage(input_tokens=9, cache_read_tokens=4)), MessageEnd()]
    )
    delta = next(sse.json() for sse in frames_to_events(frames) if sse.event == "message_delta")
    assert delta["usage"] == {
        "input_tokens": 9,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
    }


def test_render_stream_fail_emits_an_error_event_and_stops():
    renderer = anthropic.StreamRenderer(ChatRequest(model="c", messages=[]), "r1", 0)
    renderer.feed(MessageStart("x", "m"))
    frames = renderer.fail("Upstream timed out")
    assert frames == [
        b'event: error\ndata: {"type":"error","error":{"type":"api_error",'
        b'"message":"Upstream timed out"}}\n\n'
    ]
    assert renderer.feed(TextDelta(0, "late")) == []
    assert renderer.finish() == []


def test_render_stream_stop_sequence_and_refusal():
    for end, expected in [
        (
            MessageEnd("stop_sequence", "END"),
            {"stop_reason": "stop_sequence", "stop_sequence": "END"},
        ),
        (MessageEnd("content_filter"), {"stop_reason": "refusal", "stop_sequence": None}),
        (MessageEnd("max_tokens"), {"stop_reason": "max_tokens", "stop_sequence": None}),
    ]:
        events = frames_to_events(render_stream([MessageStart("x", "m"), end]))
        delta = next(sse.json() for sse in events if sse.event == "message_delta")
        assert delta["delta"] == expected


# --- Streams: round trips ----------------------------------------------------------------------


def split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream_events(stop_reason="tool_use") -> list:
    arguments_a = json.dumps({"location": "San Francisco, CA", "unit": "fahrenheit"})
    arguments_b = json.dumps({"timezone": "Europe/Paris", "format": "24h", "note": "ünïcødé"})
    return [
        MessageStart("msg_RT", "claude", Usage(input_tokens=40, cache_read_tokens=5)),
        TextStart(0),
        *[TextDelta(0, piece) for piece in split("Let me look that up for you, twice.", 4)],
        BlockStop(0),
        ToolCallStart(1, "toolu_a", "get_weather"),
        *[ToolCallDelta(1, piece) for piece in split(arguments_a, 7)],
        BlockStop(1),
        ToolCallStart(2, "toolu_b", "get_time"),
        *[ToolCallDelta(2, piece) for piece in split(arguments_b, 3)],
        BlockStop(2),
        MessageEnd(
            stop_reason, usage=Usage(input_tokens=40, output_tokens=77, cache_read_tokens=5)
        ),
    ]


@pytest.mark.parametrize("stop_reason", ["tool_use", "max_tokens"])
def test_stream_round_trip_renderer_to_parser(stop_reason):
    original = stream_events(stop_reason)
    frames = render_stream(original, response_id="msg_RT")
    parser = anthropic.StreamParser()
    parsed = [event for sse in frames_to_events(frames) for event in parser.feed(sse)]
    parsed += parser.close()
    assert parsed[0] == MessageStart("msg_RT", "claude-sonnet-4-5", original[0].usage)
    assert parsed[1:] == original[1:]


def test_stream_round_trip_max_tokens_mid_text():
    original = [
        MessageStart("msg_M", "m", Usage(input_tokens=5)),
        TextStart(0),
        *[TextDelta(0, piece) for piece in split("a long answer cut short", 2)],
        BlockStop(0),
        MessageEnd("max_tokens", usage=Usage(input_tokens=5, output_tokens=16)),
    ]
    parser = anthropic.StreamParser()
    frames = render_stream(original, response_id="msg_M")
    parsed = [event for sse in frames_to_events(frames) for event in parser.feed(sse)]
    assert parsed[1:] + parser.close() == original[1:]
