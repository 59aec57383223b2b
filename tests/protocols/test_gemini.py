"""The Gemini generateContent codec: documented requests, answers and streams; both sides
against each other; every validation error with its param."""

import base64
import json

import pytest

from generation.protocols import anthropic, gemini
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

JPEG = base64.b64encode(b"\xff\xd8\xff\xe0 fake jpeg bytes \xfb\xff").decode()
FIND_THEATERS = {
    "name": "find_theaters",
    "description": "find theaters based on location and optionally movie title which is "
    "currently playing in theaters",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {
                "type": "string",
                "description": "The city and state, e.g. San Francisco, CA or a zip code",
            },
            "movie": {"type": "string", "description": "Any movie title"},
        },
        "required": ["location"],
    },
}


def sse_events(text: str) -> list[SSE]:
    events = []
    for frame in text.strip().split("\n\n"):
        data = [line[5:].strip() for line in frame.splitlines() if line.startswith("data:")]
        events.append(SSE(data="\n".join(data)))
    return events


def frames_to_events(frames: list[bytes]) -> list[SSE]:
    assert all(frame.startswith(b"data: ") and frame.endswith(b"\n\n") for frame in frames)
    return sse_events(b"".join(frames).decode())


def parse_stream(text: str) -> list:
    parser = gemini.StreamParser()
    events = [event for sse in sse_events(text) for event in parser.feed(sse)]
    return events + parser.close()


def render_stream(events, model="gemini-2.5-flash", response_id="resp-1") -> list[bytes]:
    renderer = gemini.StreamRenderer(ChatRequest(model=model, messages=[]), response_id, 0)
    frames = [frame for event in events for frame in renderer.feed(event)]
    return frames + renderer.finish()


def text_body(text="Explain how AI works in a few words", **fields) -> dict:
    return {"contents": [{"parts": [{"text": text}]}], **fields}


def parse(payload, model="gemini-2.5-flash") -> ChatRequest:
    return gemini.parse_request(payload, model=model)


# --- Caller side: requests ---------------------------------------------------------------------


def test_documented_text_request():
    assert parse(text_body()) == ChatRequest(
        model="gemini-2.5-flash",
        messages=[Message("user", [TextPart("Explain how AI works in a few words")])],
    )


def test_model_comes_from_the_url_with_or_without_prefix():
    assert parse(text_body(), model="models/gemini-2.0-flash").model == "gemini-2.0-flash"
    with pytest.raises(ProtocolError) as caught:
        gemini.parse_request(text_body())
    assert caught.value.param == "model"


@pytest.mark.parametrize("key", ["system_instruction", "systemInstruction"])
def test_documented_system_instruction_in_both_spellings(key):
    payload = {
        key: {"parts": [{"text": "You are a cat."}, {"text": "Your name is Neko."}]},
        "contents": [{"parts": [{"text": "Hello there"}]}],
    }
    assert parse(payload).system == "You are a cat.\n\nYour name is Neko."


def test_documented_multi_turn_chat():
    payload = {
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}]},
            {
                "role": "model",
                "parts": [{"text": "Great to meet you. What would you like to know?"}],
            },
            {"role": "user", "parts": [{"text": "I have two dogs in my house."}]},
            {"role": "user", "parts": [{"text": "How many paws are in my house?"}]},
        ]
    }
    request = parse(payload)
    assert [message.role for message in request.messages] == [
        "user",
        "assistant",
        "user",
        "user",
    ]
    assert request.messages[1].parts == [
        TextPart("Great to meet you. What would you like to know?")
    ]


def test_documented_generation_config():
    payload = text_body(
        generationConfig={
            "stopSequences": ["Title"],
            "temperature": 1.0,
            "maxOutputTokens": 800,
            "topP": 0.8,
            "topK": 10,
            "candidateCount": 1,
            "thinkingConfig": {"thinkingBudget": 0},
        }
    )
    request = parse(payload)
    assert (request.stop, request.temperature, request.max_tokens, request.top_p) == (
        ["Title"],
        1.0,
        800,
        0.8,
    )


def test_snake_case_generation_config():
    payload = text_body(
        generation_config={"max_output_tokens": 50, "top_p": 0.5, "stop_sequences": ["x"]}
    )
    request = parse(payload)
    assert (request.max_tokens, request.top_p, request.stop) == (50, 0.5, ["x"])


@pytest.mark.parametrize(
    "part",
    [
        {"inline_data": {"mime_type": "image/jpeg", "data": JPEG}},
        {"inlineData": {"mimeType": "image/jpeg", "data": JPEG}},
    ],
)
def test_documented_inline_image(part):
    payload = {"contents": [{"parts": [part, {"text": "Caption this image."}]}]}
    assert parse(payload).messages[0].parts == [
        ImagePart(media_type="image/jpeg", data=JPEG),
        TextPart("Caption this image."),
    ]


def test_url_safe_base64_is_accepted_as_google_does():
    raw = b"\xfb\xff\xfe image"
    url_safe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    payload = {
        "contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": url_safe}}]}]
    }
    image = parse(payload).messages[0].parts[0]
    assert base64.b64decode(image.data, validate=True) == raw


def test_file_data_with_a_url():
    payload = {
        "contents": [
            {
                "parts": [
                    {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png"}},
                    {"file_data": {"file_uri": "https://example.com/b"}},
                ]
            }
        ]
    }
    assert parse(payload).messages[0].parts == [
        ImagePart(media_type="image/png", url="https://example.com/a.png"),
        ImagePart(url="https://example.com/b"),
    ]


def test_documented_function_calling_conversation_without_ids():
    payload = {
        "contents": [
            {"role": "user", "parts": [{"text": "Which theaters in Mountain View show Barbie?"}]},
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {
                            "name": "find_theaters",
                            "args": {"location": "Mountain View, CA", "movie": "Barbie"},
                        }
                    },
                    {"functionCall": {"name": "find_theaters", "args": {"location": "Palo Alto"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "name": "find_theaters",
                            "response": {
                                "name": "find_theaters",
                                "content": {"movie": "Barbie", "theaters": ["AMC"]},
                            },
                        }
                    },
                    {"functionResponse": {"name": "find_theaters", "response": {"result": "none"}}},
                ],
            },
        ],
        "tools": [{"functionDeclarations": [FIND_THEATERS]}],
    }
    request = parse(payload)
    assert request.tools == [
        Tool("find_theaters", FIND_THEATERS["description"], FIND_THEATERS["parameters"])
    ]
    first, second = request.messages[1].parts
    assert first == ToolCall(
        "call_1_0",
        "find_theaters",
        json.dumps({"location": "Mountain View, CA", "movie": "Barbie"}),
    )
    assert second.id == "call_1_1"
    answer_first, answer_second = request.messages[2].parts
    # Paired in order by name: the first response answers the first call.
    assert answer_first.tool_call_id == "call_1_0"
    assert answer_first.name == "find_theaters"
    assert json.loads(answer_first.content[0].text) == {
        "name": "find_theaters",
        "content": {"movie": "Barbie", "theaters": ["AMC"]},
    }
    assert answer_second == ToolResult("call_1_1", [TextPart("none")], "find_theaters")


def test_function_calls_with_ids_pair_by_id():
    payload = {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in two cities?"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"id": "a", "name": "weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"id": "b", "name": "weather", "args": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"id": "b", "name": "weather", "response": {"t": 20}}},
                    {
                        "function_response": {
                            "id": "a",
                            "name": "weather",
                            "response": {"error": "offline"},
                        }
                    },
                ],
            },
        ]
    }
    results = parse(payload).messages[2].parts
    assert results == [
        ToolResult("b", [TextPart('{"t": 20}')], "weather"),
        ToolResult("a", [TextPart("offline")], "weather", is_error=True),
    ]


def test_legacy_function_role_and_thought_parts():
    payload = {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {
                "role": "model",
                "parts": [
                    {"text": "Thinking about it...", "thought": True},
                    {"thoughtSignature": "CiQB"},
                    {"text": "Calling.", "thoughtSignature": "CiQC"},
                    {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "CiQD"},
                ],
            },
            {"role": "function", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
        ]
    }
    request = parse(payload)
    assert request.messages[1].parts == [TextPart("Calling."), ToolCall("call_1_3", "f", "{}")]
    assert request.messages[2] == Message("user", [ToolResult("call_1_3", [], "f")])


def test_function_response_wrappers_are_unwrapped():
    calls = {
        "role": "model",
        "parts": [{"functionCall": {"name": name, "args": {}}} for name in "abcd"],
    }
    responses = [
        {"name": "a", "response": {"output": "20C"}},  # the key Google documents
        {"name": "b", "response": {"result": "done"}},  # the key this codec sends
        {"name": "c", "response": {}},
        {"name": "d", "response": {"output": {"t": 20}}},
    ]
    payload = {
        "contents": [
            {"role": "user", "parts": [{"text": "Go"}]},
            calls,
            {"role": "user", "parts": [{"functionResponse": r} for r in responses]},
        ]
    }
    results = parse(payload).messages[2].parts
    assert [result.content for result in results] == [
        [TextPart("20C")],
        [TextPart("done")],
        [],
        [TextPart('{"output": {"t": 20}}')],
    ]
    # An empty result goes back upstream as an empty object.
    request = ChatRequest(model="g", messages=[Message("user", [results[2]])])
    part = gemini.upstream_request(request, "g").body["contents"][0]["parts"][0]
    assert part == {"functionResponse": {"name": "c", "response": {}, "id": "call_1_2"}}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"mode": "AUTO"}, ("auto", "")),
        ({"mode": "ANY"}, ("required", "")),
        ({"mode": "ANY", "allowedFunctionNames": ["find_theaters"]}, ("tool", "find_theaters")),
        ({"mode": "ANY", "allowed_function_names": ["a", "b"]}, ("required", "")),
        ({"mode": "NONE"}, ("none", "")),
        ({"mode": "VALIDATED"}, ("auto", "")),
        ({"mode": "MODE_UNSPECIFIED"}, (None, "")),
        ({}, (None, "")),
    ],
)
def test_tool_config(config, expected):
    payload = text_body(
        tools=[{"functionDeclarations": [FIND_THEATERS]}],
        toolConfig={"functionCallingConfig": config},
    )
    request = parse(payload)
    assert (request.tool_choice, request.tool_choice_name) == expected


def test_snake_case_tools_and_openapi_types():
    declaration = {
        "name": "set_light_values",
        "description": "Sets the brightness and color temperature of a light.",
        "parameters": {
            "type": "OBJECT",
            "properties": {
                "brightness": {"type": "INTEGER", "description": "Light level from 0 to 100."},
                "type": {"type": "STRING", "enum": ["daylight", "cool", "warm"]},
            },
            "required": ["brightness", "type"],
        },
    }
    payload = text_body(
        tools=[{"function_declarations": [declaration, {"name": "no_params"}]}],
        tool_config={"function_calling_config": {"mode": "any"}},
    )
    request = parse(payload)
    assert request.tools[0].parameters == {
        "type": "object",
        "properties": {
            "brightness": {"type": "integer", "description": "Light level from 0 to 100."},
            "type": {"type": "string", "enum": ["daylight", "cool", "warm"]},
        },
        "required": ["brightness", "type"],
    }
    assert request.tools[1] == Tool("no_params")
    assert request.tool_choice == "required"


def test_parameters_json_schema_is_taken_as_is():
    schema = {"type": "object", "additionalProperties": False, "properties": {}}
    payload = text_body(
        tools=[{"functionDeclarations": [{"name": "f", "parametersJsonSchema": schema}]}]
    )
    assert parse(payload).tools == [Tool("f", "", schema)]


def test_ignored_fields_are_accepted():
    payload = text_body(
        safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
        generationConfig={"thinkingConfig": {"includeThoughts": True}, "seed": 3},
    )
    assert parse(payload).messages[0].parts == [TextPart("Explain how AI works in a few words")]


# --- Validation --------------------------------------------------------------------------------


def _parts(*parts, role="user"):
    return {"contents": [{"role": role, "parts": list(parts)}]}


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": {"parts": []}}, "contents"),
        ({"contents": ["hi"]}, "contents[0]"),
        ({"contents": [{"role": "user"}]}, "contents[0].parts"),
        ({"contents": [{"role": "user", "parts": []}]}, "contents[0].parts"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [{"role": 1, "parts": [{"text": "x"}]}]}, "contents[0].role"),
        (_parts("hi"), "contents[0].parts[0]"),
        (_parts({"text": 5}), "contents[0].parts[0].text"),
        (_parts({"foo": "bar"}), "contents[0].parts[0]"),
        (_parts({"text": "a", "inlineData": {}}), "contents[0].parts[0]"),
        (_parts({"executableCode": {"code": "1"}}), "contents[0].parts[0].executableCode"),
        (
            _parts({"text": "x"}, {"text": "y"}, {"inlineData": {"mimeType": "image/png"}}),
            "contents[0].parts[2].inlineData.data",
        ),
        (
            _parts(
                {"text": "x"},
                {"text": "y"},
                {"inlineData": {"mimeType": "image/png", "data": "@@"}},
            ),
            "contents[0].parts[2].inlineData.data",
        ),
        (
            _parts({"inline_data": {"mime_type": "image/png", "data": "###"}}),
            "contents[0].parts[0].inline_data.data",
        ),
        (_parts({"inlineData": {"data": JPEG}}), "contents[0].parts[0].inlineData.mimeType"),
        (
            _parts({"inlineData": {"mimeType": "application/pdf", "data": JPEG}}),
            "contents[0].parts[0].inlineData.mimeType",
        ),
        (_parts({"inlineData": "x"}), "contents[0].parts[0].inlineData"),
        (
            _parts({"fileData": {"mimeType": "image/png"}}),
            "contents[0].parts[0].fileData.fileUri",
        ),
        (
            _parts({"fileData": {"mimeType": "video/mp4", "fileUri": "https://x/v.mp4"}}),
            "contents[0].parts[0].fileData.mimeType",
        ),
        (
            _parts({"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/a.png"}}),
            "contents[0].parts[0].fileData.fileUri",
        ),
        (
            _parts({"inlineData": {"mimeType": "image/png", "data": JPEG}}, role="model"),
            "contents[0].parts[0].inlineData",
        ),
        (_parts({"functionCall": {"name": "f"}}), "contents[0].parts[0].functionCall"),
        (
            _parts({"functionResponse": {"name": "f", "response": {}}}, role="model"),
            "contents[0].parts[0].functionResponse",
        ),
        (
            _parts({"functionCall": {"args": {}}}, role="model"),
            "contents[0].parts[0].functionCall.name",
        ),
        (
            _parts({"functionCall": {"name": "f", "args": "{}"}}, role="model"),
            "contents[0].parts[0].functionCall.args",
        ),
        (
            _parts({"functionResponse": {"response": {}}}),
            "contents[0].parts[0].functionResponse.name",
        ),
        (
            _parts({"functionResponse": {"name": "f", "response": "ok"}}),
            "contents[0].parts[0].functionResponse.response",
        ),
        (text_body(systemInstruction=5), "systemInstruction"),
        (
            text_body(systemInstruction={"parts": [{"inlineData": {}}]}),
            "systemInstruction.parts[0]",
        ),
        (text_body(generationConfig=[]), "generationConfig"),
        (text_body(generationConfig={"temperature": 2.5}), "generationConfig.temperature"),
        (text_body(generationConfig={"temperature": -1}), "generationConfig.temperature"),
        (text_body(generationConfig={"temperature": "warm"}), "generationConfig.temperature"),
        (text_body(generation_config={"top_p": 1.5}), "generation_config.top_p"),
        (text_body(generationConfig={"topK": -3}), "generationConfig.topK"),
        (text_body(generationConfig={"maxOutputTokens": 0}), "generationConfig.maxOutputTokens"),
        (
            text_body(generationConfig={"maxOutputTokens": 10**10}),
            "generationConfig.maxOutputTokens",
        ),
        (
            text_body(generationConfig={"maxOutputTokens": 1.5}),
            "generationConfig.maxOutputTokens",
        ),
        (text_body(generationConfig={"candidateCount": 2}), "generationConfig.candidateCount"),
        (text_body(generationConfig={"stopSequences": "END"}), "generationConfig.stopSequences"),
        (
            text_body(generationConfig={"stopSequences": ["a", 1]}),
            "generationConfig.stopSequences[1]",
        ),
        (text_body(tools={"functionDeclarations": []}), "tools"),
        (text_body(tools=[{"googleSearch": {}}]), "tools[0]"),
        (
            text_body(tools=[{"functionDeclarations": [FIND_THEATERS]}, {"codeExecution": {}}]),
            "tools[1]",
        ),
        (
            text_body(tools=[{"functionDeclarations": [FIND_THEATERS], "google_search": {}}]),
            "tools[0]",
        ),
        (
            text_body(tools=[{"functionDeclarations": [{}]}]),
            "tools[0].functionDeclarations[0].name",
        ),
        (
            text_body(tools=[{"functionDeclarations": [{"name": "f", "parameters": []}]}]),
            "tools[0].functionDeclarations[0].parameters",
        ),
        (
            text_body(toolConfig={"functionCallingConfig": {"mode": "SOMETIMES"}}),
            "toolConfig.functionCallingConfig.mode",
        ),
        (
            text_body(toolConfig={"functionCallingConfig": {"allowedFunctionNames": [1]}}),
            "toolConfig.functionCallingConfig.allowedFunctionNames[0]",
        ),
    ],
)
def test_validation_errors_name_the_field(payload, param):
    with pytest.raises(ProtocolError) as caught:
        parse(payload)
    assert caught.value.param == param


def test_body_must_be_an_object():
    with pytest.raises(ProtocolError):
        parse([{"parts": [{"text": "x"}]}])


def test_error_messages_read_like_google():
    with pytest.raises(ProtocolError, match=r"^\* GenerateContentRequest\.contents: "):
        parse({})
    with pytest.raises(ProtocolError, match=r"Please use a valid role: user, model\."):
        parse({"contents": [{"role": "system", "parts": [{"text": "x"}]}]})
    with pytest.raises(ProtocolError, match=r"Base64 decoding failed"):
        parse(_parts({"inlineData": {"mimeType": "image/png", "data": "@@"}}))
    with pytest.raises(ProtocolError, match=r"must be between 0 and 2"):
        parse(text_body(generationConfig={"temperature": 3}))


# --- Caller side: responses --------------------------------------------------------------------


def test_render_text_response_field_by_field():
    response = ChatResponse(
        id="upstream-or-gateway-id",
        model="upstream-model",
        content=[TextPart("AI learns patterns from data.")],
        usage=Usage(
            input_tokens=6,
            output_tokens=12,
            cache_read_tokens=2,
            cache_write_tokens=1,
            reasoning_tokens=5,
        ),
    )
    rendered = gemini.render_response(response, ChatRequest(model="gemini-2.5-flash", messages=[]))
    assert rendered == {
        "candidates": [
            {
                "content": {"parts": [{"text": "AI learns patterns from data."}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 9,  # cached tokens included, as Gemini counts them
            "candidatesTokenCount": 7,
            "totalTokenCount": 21,
            "cachedContentTokenCount": 2,
            "thoughtsTokenCount": 5,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "upstream-or-gateway-id",
    }


def test_render_function_calls():
    response = ChatResponse(
        id="r",
        model="m",
        content=[
            TextPart("Checking."),
            ToolCall("toolu_1", "find_theaters", json.dumps({"location": "Mountain View"})),
            ToolCall("", "no_args", ""),
        ],
        stop_reason="tool_use",
        usage=Usage(input_tokens=3, output_tokens=4),
    )
    rendered = gemini.render_response(response, ChatRequest(model="g", messages=[]))
    candidate = rendered["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["content"]["parts"] == [
        {"text": "Checking."},
        {
            "functionCall": {
                "name": "find_theaters",
                "args": {"location": "Mountain View"},
                "id": "toolu_1",
            }
        },
        {"functionCall": {"name": "no_args", "args": {}}},
    ]
    assert rendered["usageMetadata"] == {
        "promptTokenCount": 3,
        "candidatesTokenCount": 4,
        "totalTokenCount": 7,
    }


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "STOP"),
        ("stop_sequence", "STOP"),
        ("tool_use", "STOP"),
        ("max_tokens", "MAX_TOKENS"),
        ("content_filter", "SAFETY"),
    ],
)
def test_render_finish_reasons(stop_reason, expected):
    response = ChatResponse(id="r", model="m", stop_reason=stop_reason)
    rendered = gemini.render_response(response, ChatRequest(model="g", messages=[]))
    assert rendered["candidates"][0]["finishReason"] == expected


# --- Upstream side: responses ------------------------------------------------------------------


def test_parse_documented_response():
    documented = {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": "AI learns patterns from data to make predictions."}],
                    "role": "model",
                },
                "finishReason": "STOP",
                "avgLogprobs": -0.0765,
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 8,
            "candidatesTokenCount": 10,
            "totalTokenCount": 42,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}],
            "thoughtsTokenCount": 24,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "kSJcaNqKMfO3nvgP8_SfqAE",
    }
    assert gemini.parse_response(documented) == ChatResponse(
        id="kSJcaNqKMfO3nvgP8_SfqAE",
        model="gemini-2.5-flash",
        content=[TextPart("AI learns patterns from data to make predictions.")],
        stop_reason="end_turn",
        # SPEC §5: output = candidates + thoughts.
        usage=Usage(input_tokens=8, output_tokens=34, reasoning_tokens=24),
    )


def test_parse_function_call_response_and_cached_usage():
    answer = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Let me think.", "thought": True},
                        {"text": "Looking "},
                        {"text": "it up."},
                        {
                            "functionCall": {
                                "name": "find_theaters",
                                "args": {"location": "Mountain View, CA", "movie": "Barbie"},
                            },
                            "thoughtSignature": "CiQB",
                        },
                        {"functionCall": {"id": "given", "name": "find_movies", "args": {}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 1000,
            "cachedContentTokenCount": 800,
            "candidatesTokenCount": 20,
            "totalTokenCount": 1020,
        },
        "modelVersion": "gemini-2.0-flash",
        "responseId": "R1",
    }
    response = gemini.parse_response(answer)
    assert response.content == [
        TextPart("Looking it up."),
        ToolCall(
            "call_R1_0",
            "find_theaters",
            json.dumps({"location": "Mountain View, CA", "movie": "Barbie"}),
        ),
        ToolCall("given", "find_movies", "{}"),
    ]
    assert response.stop_reason == "tool_use"  # Gemini itself says STOP
    # SPEC §5: promptTokenCount includes the cached tokens.
    assert response.usage == Usage(input_tokens=200, output_tokens=20, cache_read_tokens=800)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "end_turn"),
        ("MAX_TOKENS", "max_tokens"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "end_turn"),
        ("MALFORMED_FUNCTION_CALL", "end_turn"),
        (None, "end_turn"),
    ],
)
def test_parse_finish_reasons(reason, expected):
    answer = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert gemini.parse_response(answer).stop_reason == expected


def test_parse_blocked_prompt():
    answer = {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-flash",
    }
    response = gemini.parse_response(answer)
    assert (response.content, response.stop_reason) == ([], "content_filter")
    assert response.usage == Usage(input_tokens=7)


@pytest.mark.parametrize(
    "answer",
    [
        "text",
        {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}},
        {"usageMetadata": {}},
        {"candidates": "x"},
        {"candidates": ["x"]},
        {"candidates": [{"content": {"parts": "x"}}]},
    ],
)
def test_parse_response_refuses_malformed_answers(answer):
    with pytest.raises(UpstreamFormatError):
        gemini.parse_response(answer)


def test_parse_response_error_keeps_upstream_message():
    error = {
        "error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}
    }
    with pytest.raises(UpstreamFormatError, match="RESOURCE_EXHAUSTED: Resource exhausted"):
        gemini.parse_response(error)


# --- Upstream side: requests -------------------------------------------------------------------


def test_upstream_request_body():
    request = ChatRequest(
        model="caller-alias",
        messages=[
            Message(
                "user",
                [
                    TextPart("Compare"),
                    ImagePart(media_type="image/jpeg", data=JPEG),
                    ImagePart(url="https://example.com/a.png"),
                    ImagePart(url="https://example.com/noext"),
                ],
            ),
            Message("assistant", [ToolCall("toolu_1", "find_theaters", '{"location": "MV"}')]),
            Message("user", [ToolResult("toolu_1", [TextPart('{"theaters": ["AMC"]}')])]),
            Message("user", [ToolResult("toolu_2", [TextPart("plain text")], "other")]),
        ],
        system="Be brief.",
        tools=[Tool("find_theaters", "Find theaters", FIND_THEATERS["parameters"]), Tool("x")],
        tool_choice="tool",
        tool_choice_name="find_theaters",
        max_tokens=256,
        temperature=1.5,
        top_p=0.9,
        stop=["END"],
        user="ignored-user",
    )
    call = gemini.upstream_request(request, "gemini-2.5-flash")
    assert call.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert (call.stream, call.params) == (False, {})
    assert call.body == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Compare"},
                    {"inlineData": {"mimeType": "image/jpeg", "data": JPEG}},
                    {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png"}},
                    {
                        "fileData": {
                            "mimeType": "image/jpeg",
                            "fileUri": "https://example.com/noext",
                        }
                    },
                ],
            },
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {
                            "name": "find_theaters",
                            "args": {"location": "MV"},
                            "id": "toolu_1",
                        },
                        "thoughtSignature": gemini.THOUGHT_SIGNATURE_PLACEHOLDER,
                    }
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "name": "find_theaters",  # looked up from the call
                            "response": {"theaters": ["AMC"]},
                            "id": "toolu_1",
                        }
                    },
                    {
                        "functionResponse": {
                            "name": "other",
                            "response": {"result": "plain text"},
                            "id": "toolu_2",
                        }
                    },
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "find_theaters",
                        "parametersJsonSchema": FIND_THEATERS["parameters"],
                        "description": "Find theaters",
                    },
                    {"name": "x", "parametersJsonSchema": {"type": "object", "properties": {}}},
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["find_theaters"]}
        },
        "generationConfig": {
            "maxOutputTokens": 256,
            "temperature": 1.5,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
    }


def test_upstream_streaming_request():
    request = ChatRequest(model="m", messages=[Message("user", [TextPart("Hi")])], stream=True)
    call = gemini.upstream_request(request, "models/gemini-2.0-flash")
    assert call.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert (call.stream, call.params) == (True, {"alt": "sse"})
    assert call.body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("auto", {"mode": "AUTO"}), ("required", {"mode": "ANY"}), ("none", {"mode": "NONE"})],
)
def test_upstream_tool_choice(choice, expected):
    request = ChatRequest(
        model="m",
        messages=[Message("user", [TextPart("x")])],
        tools=[Tool("f")],
        tool_choice=choice,
    )
    body = gemini.upstream_request(request, "g").body
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_upstream_error_results_and_images_in_results():
    request = ChatRequest(
        model="m",
        messages=[
            Message("assistant", [ToolCall("c1", "snap"), ToolCall("c2", "snap")]),
            Message(
                "user",
                [ToolResult("c1", [TextPart("no camera")], "snap", is_error=True)],
            ),
            Message(
                "user",
                [ToolResult("c2", [TextPart("ok"), ImagePart(media_type="image/jpeg", data=JPEG)])],
            ),
        ],
    )
    contents = gemini.upstream_request(request, "g").body["contents"]
    # The two user messages become the one turn answering the model's two calls.
    assert len(contents) == 2
    assert contents[1]["parts"] == [
        {"functionResponse": {"name": "snap", "response": {"error": "no camera"}, "id": "c1"}},
        {"functionResponse": {"name": "snap", "response": {"result": "ok"}, "id": "c2"}},
        {"inlineData": {"mimeType": "image/jpeg", "data": JPEG}},
    ]


# --- Round trips -------------------------------------------------------------------------------


def full_request() -> ChatRequest:
    return ChatRequest(
        model="gemini-2.5-pro",
        messages=[
            Message(
                "user",
                [
                    TextPart("Look:"),
                    ImagePart(media_type="image/jpeg", data=JPEG),
                    ImagePart(media_type="image/png", url="https://example.com/a.png"),
                ],
            ),
            Message(
                "assistant",
                [
                    TextPart("Two calls."),
                    ToolCall("call_a", "find_theaters", json.dumps({"location": "MV"})),
                    ToolCall("call_b", "get_time", json.dumps({})),
                ],
            ),
            Message(
                "user",
                [
                    ToolResult(
                        "call_a", [TextPart(json.dumps({"theaters": ["AMC"]}))], "find_theaters"
                    ),
                    ToolResult("call_b", [TextPart("clock broken")], "get_time", is_error=True),
                    TextPart("Summarise."),
                ],
            ),
        ],
        system="You are terse.",
        tools=[Tool("find_theaters", "Find", FIND_THEATERS["parameters"]), Tool("get_time")],
        tool_choice="tool",
        tool_choice_name="find_theaters",
        max_tokens=512,
        temperature=1.2,
        top_p=0.8,
        stop=["END"],
    )


def test_round_trip_request_through_the_wire():
    original = full_request()
    call = gemini.upstream_request(original, "gemini-2.5-pro")
    parsed = gemini.parse_request(json.loads(json.dumps(call.body)), model="gemini-2.5-pro")
    assert parsed == original


def test_anthropic_caller_to_gemini_upstream_keeps_the_conversation():
    caller = {
        "model": "gemini-2.5-pro",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {"c": 1}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "sunny"}],
            },
        ],
    }
    internal = anthropic.parse_request(caller)
    call = gemini.upstream_request(internal, "gemini-2.5-pro")
    assert gemini.parse_request(call.body, model="gemini-2.5-pro").messages == internal.messages


def test_round_trip_response_through_the_wire():
    original = ChatResponse(
        id="resp-9",
        model="gemini-2.5-flash",
        content=[TextPart("Hello"), ToolCall("call_1", "f", json.dumps({"a": [1, 2]}))],
        stop_reason="tool_use",
        usage=Usage(input_tokens=10, output_tokens=15, cache_read_tokens=3, reasoning_tokens=4),
    )
    request = ChatRequest(model="gemini-2.5-flash", messages=[])
    rendered = gemini.render_response(original, request)
    assert gemini.parse_response(json.loads(json.dumps(rendered))) == original


# --- Streams: parsing --------------------------------------------------------------------------

DOCUMENTED_STREAM = """
data: {"candidates": [{"content": {"parts": [{"text": "Once"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9},"modelVersion": "gemini-2.0-flash","responseId": "mJ5caK-1"}

data: {"candidates": [{"content": {"parts": [{"text": " upon a time, in a land"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9},"modelVersion": "gemini-2.0-flash","responseId": "mJ5caK-1"}

data: {"candidates": [{"content": {"parts": [{"text": " far away."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 12,"totalTokenCount": 21,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 9}]},"modelVersion": "gemini-2.0-flash","responseId": "mJ5caK-1"}
"""  # noqa: E501

FUNCTION_CALL_STREAM = """
data: {"candidates": [{"content": {"parts": [{"text": "Let me check.", "thought": true}],"role": "model"},"index": 0}],"modelVersion": "gemini-2.5-flash","responseId": "fc-1"}

data: {"candidates": [{"content": {"parts": [{"text": "Checking "}],"role": "model"},"index": 0}],"modelVersion": "gemini-2.5-flash","responseId": "fc-1"}

data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "find_theaters","args": {"location": "Mountain View, CA","movie": "Barbie"}},"thoughtSignature": "CiQB"},{"functionCall": {"name": "find_movies","args": {"location": "Palo Alto"}}}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 100,"cachedContentTokenCount": 60,"candidatesTokenCount": 30,"thoughtsTokenCount": 12,"totalTokenCount": 142},"modelVersion": "gemini-2.5-flash","responseId": "fc-1"}
"""  # noqa: E501


def test_parse_documented_stream():
    assert parse_stream(DOCUMENTED_STREAM) == [
        MessageStart("mJ5caK-1", "gemini-2.0-flash", Usage(input_tokens=9)),
        TextStart(0),
        TextDelta(0, "Once"),
        TextDelta(0, " upon a time, in a land"),
        TextDelta(0, " far away."),
        BlockStop(0),
        MessageEnd("end_turn", "", Usage(input_tokens=9, output_tokens=12)),
    ]


def test_parse_function_call_stream():
    assert parse_stream(FUNCTION_CALL_STREAM) == [
        MessageStart("fc-1", "gemini-2.5-flash", Usage()),
        TextStart(0),
        TextDelta(0, "Checking "),
        BlockStop(0),
        ToolCallStart(1, "call_fc-1_0", "find_theaters"),
        ToolCallDelta(1, json.dumps({"location": "Mountain View, CA", "movie": "Barbie"})),
        BlockStop(1),
        ToolCallStart(2, "call_fc-1_1", "find_movies"),
        ToolCallDelta(2, json.dumps({"location": "Palo Alto"})),
        BlockStop(2),
        MessageEnd(
            "tool_use",
            "",
            Usage(input_tokens=40, output_tokens=42, cache_read_tokens=60, reasoning_tokens=12),
        ),
    ]


def test_parse_stream_max_tokens_and_safety():
    stream = """
data: {"candidates": [{"content": {"parts": [{"text": "cut"}],"role": "model"},"finishReason": "MAX_TOKENS"}],"responseId": "a"}
"""  # noqa: E501
    assert parse_stream(stream)[-1].stop_reason == "max_tokens"
    blocked = 'data: {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "responseId": "b"}'
    assert parse_stream(blocked) == [
        MessageStart("b", "", Usage()),
        MessageEnd("content_filter", "", Usage()),
    ]


def test_stream_error_chunk_raises_with_the_upstream_message():
    parser = gemini.StreamParser()
    parser.feed(sse_events(DOCUMENTED_STREAM)[0])
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    with pytest.raises(UpstreamFormatError, match=r"UNAVAILABLE: The model is overloaded\."):
        parser.feed(SSE(data=json.dumps(error)))


@pytest.mark.parametrize("sse", [SSE(data="nope"), SSE(data="[]"), SSE(data='{"candidates": 3}')])
def test_stream_garbage_raises(sse):
    with pytest.raises(UpstreamFormatError):
        gemini.StreamParser().feed(sse)


def test_empty_stream_raises_on_close():
    with pytest.raises(UpstreamFormatError):
        gemini.StreamParser().close()


# --- Streams: rendering ------------------------------------------------------------------------


def test_render_stream_chunks():
    frames = render_stream(
        [
            MessageStart("x", "m", Usage(input_tokens=9)),
            TextStart(0),
            TextDelta(0, "Once"),
            TextDelta(0, ""),
            TextDelta(0, " upon a time"),
            BlockStop(0),
            ToolCallStart(1, "toolu_1", "find_theaters"),
            ToolCallDelta(1, '{"loca'),
            ToolCallDelta(1, 'tion": "MV"}'),
            BlockStop(1),
            MessageEnd("tool_use", usage=Usage(input_tokens=9, output_tokens=12)),
        ]
    )
    chunks = [sse.json() for sse in frames_to_events(frames)]
    base = {"modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}
    assert chunks == [
        {
            "candidates": [{"content": {"parts": [{"text": "Once"}], "role": "model"}, "index": 0}],
            **base,
        },
        {
            "candidates": [
                {"content": {"parts": [{"text": " upon a time"}], "role": "model"}, "index": 0}
            ],
            **base,
        },
        {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {
                                "functionCall": {
                                    "name": "find_theaters",
                                    "args": {"location": "MV"},
                                    "id": "toolu_1",
                                }
                            }
                        ],
                        "role": "model",
                    },
                    "index": 0,
                }
            ],
            **base,
        },
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": ""}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 9,
                "candidatesTokenCount": 12,
                "totalTokenCount": 21,
            },
            **base,
        },
    ]
    assert not any(frame.startswith(b"data: [DONE]") for frame in frames)


def test_render_stream_flushes_unclosed_calls_and_finishes_without_end():
    frames = render_stream(
        [ToolCallStart(0, "c", "f"), ToolCallDelta(0, '{"a": 1}')], response_id="r"
    )
    chunks = [sse.json() for sse in frames_to_events(frames)]
    assert chunks[0]["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "f", "args": {"a": 1}, "id": "c"}}
    ]
    assert chunks[1]["candidates"][0]["finishReason"] == "STOP"


def test_render_stream_usage_from_start_when_end_lacks_it():
    frames = render_stream(
        [MessageStart("x", "m", Usage(input_tokens=5, cache_read_tokens=5)), MessageEnd()]
    )
    assert frames_to_events(frames)[-1].json()["usageMetadata"] == {
        "promptTokenCount": 10,
        "candidatesTokenCount": 0,
        "totalTokenCount": 10,
        "cachedContentTokenCount": 5,
    }


def test_render_stream_fail():
    renderer = gemini.StreamRenderer(ChatRequest(model="g", messages=[]), "r", 0)
    assert renderer.fail("Upstream timed out") == [
        b'data: {"error":{"code":500,"message":"Upstream timed out","status":"INTERNAL"}}\n\n'
    ]
    assert renderer.feed(TextDelta(0, "late")) == []
    assert renderer.finish() == []


# --- Streams: round trips ----------------------------------------------------------------------


def split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("stop_reason", ["tool_use", "max_tokens"])
def test_stream_round_trip_renderer_to_parser(stop_reason):
    arguments_a = {"location": "Mountain View, CA", "movie": "Barbie"}
    arguments_b = {"timezone": "Europe/Paris", "note": "ünïcødé"}
    usage = Usage(input_tokens=30, output_tokens=50, cache_read_tokens=10, reasoning_tokens=8)
    original = [
        MessageStart("resp-1", "gemini-2.5-flash", Usage(input_tokens=30, cache_read_tokens=10)),
        TextStart(0),
        *[TextDelta(0, piece) for piece in split("Let me look that up for you, twice.", 4)],
        BlockStop(0),
        ToolCallStart(1, "call_a", "find_theaters"),
        *[ToolCallDelta(1, piece) for piece in split(json.dumps(arguments_a), 5)],
        BlockStop(1),
        ToolCallStart(2, "call_b", "get_time"),
        *[ToolCallDelta(2, piece) for piece in split(json.dumps(arguments_b), 3)],
        BlockStop(2),
        MessageEnd(stop_reason, usage=usage),
    ]
    parser = gemini.StreamParser()
    parsed = [e for sse in frames_to_events(render_stream(original)) for e in parser.feed(sse)]
    parsed += parser.close()
    # The first chunk carries no usage: Gemini reports it with the last one.
    assert parsed[0] == MessageStart("resp-1", "gemini-2.5-flash", Usage())
    texts = [event for event in parsed if isinstance(event, TextDelta)]
    assert "".join(event.text for event in texts) == "Let me look that up for you, twice."
    assert len(texts) == len(split("Let me look that up for you, twice.", 4))
    # Gemini sends function arguments whole: one delta per call.
    assert [e for e in parsed if not isinstance(e, (MessageStart, TextDelta))] == [
        TextStart(0),
        BlockStop(0),
        ToolCallStart(1, "call_a", "find_theaters"),
        ToolCallDelta(1, json.dumps(arguments_a)),
        BlockStop(1),
        ToolCallStart(2, "call_b", "get_time"),
        ToolCallDelta(2, json.dumps(arguments_b)),
        BlockStop(2),
        MessageEnd(stop_reason, usage=usage),
    ]


def test_stream_round_trip_max_tokens_mid_text():
    original = [
        MessageStart("r", "m"),
        TextStart(0),
        *[TextDelta(0, piece) for piece in split("a long answer cut short", 3)],
        BlockStop(0),
        MessageEnd("max_tokens", usage=Usage(input_tokens=4, output_tokens=8)),
    ]
    parser = gemini.StreamParser()
    parsed = [e for sse in frames_to_events(render_stream(original)) for e in parser.feed(sse)]
    assert parsed[1:] + parser.close() == original[1:]
