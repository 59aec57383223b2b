"""The official openai, anthropic and google-genai SDKs against a live gateway: every protocol,
streamed and not, across protocols, a tool round trip, and the SDKs' typed errors."""

import json

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from billing.invariants import wallet_problems
from billing.models import UsageRecord, Wallet
from tests.protocols import WEATHER

pytestmark = pytest.mark.django_db(transaction=True)


def openai_client(gateway, key):
    return openai.OpenAI(api_key=key, base_url=f"{gateway}/v1", max_retries=0)


def anthropic_client(gateway, key):
    return anthropic.Anthropic(api_key=key, base_url=gateway, max_retries=0)


def gemini_client(gateway, key, version="v1beta"):
    return genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=gateway, api_version=version)
    )


def test_openai_chat_on_an_openai_model(gateway, demo):
    client = openai_client(gateway, demo["keys"]["default"])
    completion = client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=50,
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content.startswith("Sandbox reply")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    record = UsageRecord.objects.get()
    assert record.protocol == "openai" and record.credits > 0
    assert wallet_problems(demo["account"].pk) == []


def test_openai_sdk_streams_a_claude_model_token_by_token(gateway, demo):
    client = openai_client(gateway, demo["keys"]["claude-default"])
    stream = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "Tell me something"}],
        max_tokens=100,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Sandbox reply") and len([c for c in chunks if c.choices]) > 5
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    record = UsageRecord.objects.get()
    assert record.stream and record.model.slug == "claude-sonnet-4-5"


def test_openai_stream_without_include_usage_has_no_usage_chunk(gateway, demo):
    client = openai_client(gateway, demo["keys"]["default"])
    chunks = list(
        client.chat.completions.create(
            model="gpt-4.1-mini", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert all(chunk.usage is None for chunk in chunks)
    assert UsageRecord.objects.get().output_tokens > 0  # billed all the same


def test_openai_responses_streamed_and_not(gateway, demo):
    client = openai_client(gateway, demo["keys"]["default"])
    response = client.responses.create(model="gpt-4.1", input="Say hello", max_output_tokens=40)
    assert response.id.startswith("resp_") and response.output_text.startswith("Sandbox reply")
    assert response.usage.input_tokens > 0
    events = list(client.responses.create(model="gpt-4.1", input="Say hello", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 3
    assert UsageRecord.objects.filter(protocol="responses").count() == 2


def test_anthropic_sdk_calls_a_gemini_model_of_its_group(gateway, demo):
    client = anthropic_client(gateway, demo["keys"]["claude-default"])
    message = client.messages.create(
        model="gemini-2.5-flash",
        max_tokens=64,
        system="You are terse.",
        messages=[{"role": "user", "content": "Hello there"}],
    )
    assert message.id.startswith("msg_") and message.stop_reason == "end_turn"
    assert message.content[0].text.startswith("Sandbox reply")
    with client.messages.stream(
        model="gemini-2.5-flash", max_tokens=64, messages=[{"role": "user", "content": "Again"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3 and final.usage.output_tokens > 0
    assert UsageRecord.objects.filter(protocol="anthropic").count() == 2


def test_google_genai_streamed_and_not_on_both_paths(gateway, demo):
    client = gemini_client(gateway, demo["keys"]["gemini-default"])
    result = client.models.generate_content(model="gemini-2.5-pro", contents="Hello")
    assert result.text.startswith("Sandbox reply")
    assert result.usage_metadata.prompt_token_count > 0
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-pro", contents="Hi"))
    assert len(chunks) > 3 and "".join(c.text or "" for c in chunks).startswith("Sandbox reply")
    # google-genai 3.x given a base URL uses /v1/models/...; that path answers too.
    v1 = gemini_client(gateway, demo["keys"]["claude-default"], version="v1")
    assert v1.models.generate_content(model="claude-haiku-4-5", contents="Hi").text
    assert UsageRecord.objects.filter(protocol="gemini").count() == 3


def test_tool_call_round_trip_through_translation(gateway, demo):
    client = openai_client(gateway, demo["keys"]["claude-default"])
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    messages = [{"role": "user", "content": "What is the weather? Use get_weather."}]
    first = client.chat.completions.create(
        model="claude-sonnet-4-5", messages=messages, tools=tools, max_tokens=100
    )
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["location"]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    second = client.chat.completions.create(
        model="claude-sonnet-4-5", messages=messages, tools=tools, max_tokens=100
    )
    assert "sunny, 21 C" in second.choices[0].message.content


def test_anthropic_tool_round_trip_streamed(gateway, demo):
    client = anthropic_client(gateway, demo["keys"]["claude-default"])
    tools = [{"name": "get_weather", "description": "Weather now", "input_schema": WEATHER}]
    with client.messages.stream(
        model="deepseek-chat",
        max_tokens=100,
        tools=tools,
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        message = stream.get_final_message()
    (use,) = [block for block in message.content if block.type == "tool_use"]
    assert message.stop_reason == "tool_use" and use.input["location"]
    answer = client.messages.create(
        model="deepseek-chat",
        max_tokens=100,
        tools=tools,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [use.model_dump()]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "rain"}
            ]},
        ],
    )  # fmt: skip
    assert "rain" in answer.content[0].text


def test_typed_errors(gateway, demo):
    with pytest.raises(openai.AuthenticationError):
        openai_client(gateway, "sk-byts-" + "x" * 40).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.PermissionDeniedError) as denied:
        openai_client(gateway, demo["keys"]["default"]).chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}]
        )
    assert denied.value.code == "model_not_in_group"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client(gateway, "sk-byts-" + "y" * 40).messages.create(
            model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic_client(gateway, demo["keys"]["claude-default"]).messages.create(
            model="gpt-4.1", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    google_client = gemini_client(gateway, demo["keys"]["gemini-default"])
    with pytest.raises(genai_errors.ClientError) as google:
        google_client.models.generate_content(model="gpt-4.1", contents="x")
    assert google.value.code == 403


def test_an_empty_wallet_is_402_in_every_sdk(gateway, demo):
    Wallet.objects.filter(account=demo["account"]).update(balance=0)
    with pytest.raises(openai.APIStatusError) as error:
        openai_client(gateway, demo["keys"]["default"]).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "x"}]
        )
    assert error.value.status_code == 402 and error.value.code == "insufficient_balance"
    with pytest.raises(anthropic.APIStatusError) as error:
        anthropic_client(gateway, demo["keys"]["claude-default"]).messages.create(
            model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert error.value.status_code == 402
    google_client = gemini_client(gateway, demo["keys"]["gemini-default"])
    with pytest.raises(genai_errors.ClientError) as google:
        google_client.models.generate_content(model="gemini-2.5-pro", contents="x")
    assert google.value.code == 402
    assert not UsageRecord.objects.exists()
