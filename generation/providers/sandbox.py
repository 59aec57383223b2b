"""The built-in sandbox upstream: an httpx transport that answers in-process, in the wire format
of whichever provider it stands in for, so the whole product works offline and tests exercise
the real code path (translation, HTTP, streaming, error mapping).

It is built from the caller side of the same protocol codecs: it parses the request as that
provider would and renders its answer as that provider does. Answers are deterministic for a
request. Usage numbers are real counts of what it read and wrote (about four characters per
token, one token per word written).

Knobs, for tests and the demo, written anywhere in the prompt:
    [sandbox:status=503]   answer with this HTTP error status
    [sandbox:timeout]      time out before answering
    [sandbox:cut]          drop the connection halfway through a stream
    [sandbox:words=200]    write this many words
    [sandbox:delay=30]     milliseconds between streamed tokens
    [sandbox:tool]         call a tool (the first one offered), even without being asked
and for load tests, settings (from the environment): BYTESPIKE_SANDBOX_LATENCY_MS (before the
first byte), BYTESPIKE_SANDBOX_TOKEN_DELAY_MS, and BYTESPIKE_SANDBOX_FAILURE_RATE,
BYTESPIKE_SANDBOX_TIMEOUT_RATE, BYTESPIKE_SANDBOX_CUT_RATE (fractions of calls, 0 to 1).
Each channel adds its own faults (``SandboxFaults``: a failure rate, a timeout rate, a latency
and an outage window, set in the admin), so one deployment of a model can fail while another
answers.
"""

import asyncio
import hashlib
import json
import logging
import math
import random
import re
import time

import httpx
from django.conf import settings

from generation.protocols import anthropic, gemini, openai_chat, openai_responses
from generation.protocols.base import ProtocolError
from generation.protocols.internal import (
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImagePart,
    MessageEnd,
    MessageStart,
    TextDelta,
    TextPart,
    TextStart,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolResult,
    Usage,
)
from generation.providers import SandboxFaults

logger = logging.getLogger(__name__)
KNOB = re.compile(r"\[sandbox:(\w+)(?:=([^\]]*))?\]")
GEMINI_PATH = re.compile(
    r"/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$"
)
WORDS = [
    "the",
    "quick",
    "model",
    "answers",
    "every",
    "request",
    "with",
    "care",
    "and",
    "precise",
    "tokens",
    "while",
    "the",
    "gateway",
    "counts",
    "each",
    "one",
    "so",
    "the",
    "wallet",
    "stays",
    "honest",
    "and",
    "streams",
    "arrive",
    "word",
    "by",
    "word",
    "across",
    "four",
    "protocols",
    "translated",
    "through",
    "one",
    "internal",
    "form",
]
TOKENS_PER_IMAGE = 258
DEFAULT_WORDS = 24


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


class SandboxTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, kind: str = "", faults: SandboxFaults | None = None):
        self.kind = kind
        self.faults = faults

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        codec, model = self._route(path)
        if codec is None:
            return _json_error(404, f"The sandbox does not serve {path}.")
        await request.aread()
        try:
            body = json.loads(request.content or b"{}")
            chat = codec.parse_request(body, model=model) if model else codec.parse_request(body)
        except (ValueError, ProtocolError) as error:
            return _json_error(400, getattr(error, "message", str(error)))
        if codec is gemini:
            chat.stream = path.endswith("streamGenerateContent")
        knobs = _knobs(chat)
        faults = self.faults or SandboxFaults()
        latency = settings.BYTESPIKE_SANDBOX_LATENCY_MS + faults.latency_ms
        await _sleep_ms(float(knobs.get("latency", latency)))
        chance = random.Random(f"{time.time_ns()}")
        timeout_rate = settings.BYTESPIKE_SANDBOX_TIMEOUT_RATE + faults.timeout_rate
        if "timeout" in knobs or chance.random() < timeout_rate:
            raise httpx.ReadTimeout("sandbox timeout", request=request)
        if "status" in knobs:
            return _json_error(int(knobs["status"]), "Sandbox failure, as asked.")
        if faults.in_outage(time.time()):
            return _json_error(503, "Sandbox outage (the channel's outage window).")
        if chance.random() < settings.BYTESPIKE_SANDBOX_FAILURE_RATE + faults.failure_rate:
            return _json_error(503, "Sandbox failure (injected).")
        answer = compose(chat, knobs)
        if not chat.stream:
            return httpx.Response(200, json=codec.render_response(answer, chat))
        cut = "cut" in knobs or chance.random() < settings.BYTESPIKE_SANDBOX_CUT_RATE
        delay = float(knobs.get("delay", settings.BYTESPIKE_SANDBOX_TOKEN_DELAY_MS))
        frames = _frames(codec, chat, answer)
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=_FrameStream(frames, delay_ms=delay, cut=cut),
        )

    @staticmethod
    def _route(path: str):
        if path.endswith("/chat/completions"):
            return openai_chat, None
        if path.endswith("/responses"):
            return openai_responses, None
        if path.endswith("/messages"):
            return anthropic, None
        if match := GEMINI_PATH.search(path):
            return gemini, match["model"]
        return None, None


def _json_error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "code": status}})


async def _sleep_ms(ms: float) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000)


def _request_text(chat: ChatRequest) -> str:
    chunks = [chat.system]
    for message in chat.messages:
        for part in message.parts:
            if isinstance(part, TextPart):
                chunks.append(part.text)
            elif isinstance(part, ToolCall):
                chunks.append(part.name + part.arguments)
            elif isinstance(part, ToolResult):
                chunks.extend(p.text for p in part.content if isinstance(p, TextPart))
    chunks.extend(json.dumps(tool.parameters) + tool.name + tool.description for tool in chat.tools)
    return "\n".join(chunk for chunk in chunks if chunk)


def _knobs(chat: ChatRequest) -> dict:
    return {name: value for name, value in KNOB.findall(_request_text(chat))}


def _last_user_parts(chat: ChatRequest) -> list:
    for message in reversed(chat.messages):
        if message.role == "user":
            return message.parts
    return []


def compose(chat: ChatRequest, knobs: dict) -> ChatResponse:
    """The sandbox's deterministic answer to a request."""
    text = _request_text(chat)
    seed = hashlib.sha256(text.encode()).hexdigest()
    images = sum(isinstance(part, ImagePart) for message in chat.messages for part in message.parts)
    input_tokens = estimate_tokens(text) + images * TOKENS_PER_IMAGE
    # A long system prompt is "cached" from the second call on: three quarters of it.
    cached = (estimate_tokens(chat.system) * 3 // 4) if len(chat.system) >= 4096 else 0
    usage = Usage(input_tokens=input_tokens - cached, cache_read_tokens=cached)
    response = ChatResponse(id=f"sb{seed[:24]}", model=chat.model, usage=usage)

    last = _last_user_parts(chat)
    results = [part for part in last if isinstance(part, ToolResult)]
    mentioned = any(isinstance(p, TextPart) and _mentions_tool(p.text, chat) for p in last)
    wants_tool = (
        bool(chat.tools)
        and not results
        and chat.tool_choice != "none"
        and (chat.tool_choice in ("required", "tool") or "tool" in knobs or mentioned)
    )
    if wants_tool:
        tool = next((t for t in chat.tools if t.name == chat.tool_choice_name), chat.tools[0])
        arguments = json.dumps(_arguments_for(tool.parameters, seed))
        response.content = [ToolCall(id=f"call_{seed[:20]}", name=tool.name, arguments=arguments)]
        response.stop_reason = "tool_use"
        usage.output_tokens = estimate_tokens(arguments) + 5
        return response

    if results:
        said = " ".join(p.text for r in results for p in r.content if isinstance(p, TextPart))[:200]
        words = f"The tool {results[0].name or 'call'} returned: {said}".split()
    else:
        count = int(knobs.get("words", DEFAULT_WORDS))
        rng = random.Random(seed)
        prompt = " ".join(p.text for p in last if isinstance(p, TextPart))
        opening = f"Sandbox reply to “{prompt[:60]}”:".split() if prompt else ["Sandbox", "reply:"]
        words = opening + [rng.choice(WORDS) for _ in range(max(count - len(opening), 0))]
    if chat.max_tokens is not None and len(words) > chat.max_tokens:
        words = words[: chat.max_tokens]
        response.stop_reason = "max_tokens"
    reply = " ".join(words)
    for stop in chat.stop:
        if stop and stop in reply:
            reply = reply[: reply.index(stop)]
            response.stop_reason, response.stop_sequence = "stop_sequence", stop
    response.content = [TextPart(reply)]
    usage.output_tokens = len(reply.split())
    return response


def _mentions_tool(text: str, chat: ChatRequest) -> bool:
    return any(tool.name and tool.name in text for tool in chat.tools)


def _arguments_for(schema: dict, seed: str) -> dict:
    """Plausible arguments for a JSON schema: every required property gets a value."""
    properties = schema.get("properties") or {}
    required = schema.get("required") or list(properties)
    values = {}
    for name in required:
        spec = properties.get(name, {})
        kind = spec.get("type")
        if spec.get("enum"):
            values[name] = spec["enum"][0]
        elif kind in ("integer", "number"):
            values[name] = int(seed[:2], 16) % 10 + 1
        elif kind == "boolean":
            values[name] = True
        elif kind == "array":
            values[name] = []
        elif kind == "object":
            values[name] = _arguments_for(spec, seed)
        else:
            values[name] = "Paris" if name in ("location", "city") else f"sandbox-{name}"
    return values


def events_for(answer: ChatResponse) -> list:
    """The stream an upstream would send for ``answer``: word by word, arguments in pieces."""
    events = [MessageStart(id=answer.id, model=answer.model, usage=answer.usage)]
    for index, part in enumerate(answer.content):
        if isinstance(part, TextPart):
            events.append(TextStart(index))
            words = part.text.split(" ")
            events.extend(
                TextDelta(index, word if i == 0 else " " + word) for i, word in enumerate(words)
            )
        else:
            events.append(ToolCallStart(index, part.id, part.name))
            step = max(len(part.arguments) // 3, 1)
            events.extend(
                ToolCallDelta(index, part.arguments[i : i + step])
                for i in range(0, len(part.arguments), step)
            )
        events.append(BlockStop(index))
    events.append(MessageEnd(answer.stop_reason, answer.stop_sequence, answer.usage))
    return events


def _frames(codec, chat: ChatRequest, answer: ChatResponse) -> list[bytes]:
    renderer = codec.StreamRenderer(chat, answer.id, int(time.time()))
    frames = []
    for event in events_for(answer):
        frames.extend(renderer.feed(event))
    frames.extend(renderer.finish())
    return frames


class _FrameStream(httpx.AsyncByteStream):
    def __init__(self, frames: list[bytes], *, delay_ms: float, cut: bool):
        self.frames = frames
        self.delay_ms = delay_ms
        self.cut = cut

    async def __aiter__(self):
        stop_at = len(self.frames) // 2 if self.cut else None
        sent = 0
        try:
            for number, frame in enumerate(self.frames):
                if number == stop_at:
                    raise httpx.RemoteProtocolError("sandbox dropped the connection")
                if number:
                    await _sleep_ms(self.delay_ms)
                yield frame
                sent += 1
        finally:
            if sent < len(self.frames) and stop_at is None:
                logger.info(
                    "sandbox stream closed early: %d of %d frames sent", sent, len(self.frames)
                )
