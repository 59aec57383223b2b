"""The text routes: OpenAI Chat Completions, OpenAI Responses, Anthropic Messages and Gemini
generateContent. Each call is parsed in the caller's protocol, checked against the key's group
and limits, held for its worst case, translated to the model's upstream protocol, sent, and
answered (whole or streamed) in the caller's protocol; then settled with its actual usage, or
released if it failed. Nothing here holds a database connection across the upstream call."""

import asyncio
import json
import logging
import math
import threading
import time
from contextlib import AsyncExitStack, nullcontext
from dataclasses import dataclass

from django.db import DatabaseError
from django.http import StreamingHttpResponse
from ulid import ULID

from billing import pricing, tags
from billing.metering import meter
from billing.usage import UsageFacts
from catalogue.models import ChannelKind, Family
from core import logs, metrics
from core.errors import ApiError
from generation.breakers import breakers
from generation.dataplane.base import dataplane_view, json_body, unavailable
from generation.dataplane.errors import Protocol, json_response
from generation.failover import UPSTREAM_HEADER, first_answer
from generation.protocols import anthropic, gemini, openai_chat, openai_responses
from generation.protocols.base import (
    CallerCodec,
    ProtocolError,
    UpstreamCodec,
    UpstreamFormatError,
)
from generation.protocols.internal import (
    ChatRequest,
    ImagePart,
    MessageEnd,
    MessageStart,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolResult,
    Usage,
)
from generation.providers import UpstreamError, open_stream, send_json
from generation.routing import Target, Upstream, resolve_model_for
from keys.auth import KeyPrincipal

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Caller:
    name: str  # also the usage record's protocol
    protocol: Protocol
    codec: CallerCodec
    id_prefix: str


OPENAI_CHAT = Caller("openai", Protocol.OPENAI, openai_chat, "chatcmpl-")
OPENAI_RESPONSES = Caller("responses", Protocol.OPENAI, openai_responses, "resp_")
ANTHROPIC = Caller("anthropic", Protocol.ANTHROPIC, anthropic, "msg_")
GEMINI = Caller("gemini", Protocol.GEMINI, gemini, "")
# The console's playground speaks OpenAI Chat to the browser; its usage says where it came from.
PLAYGROUND = Caller("playground", Protocol.OPENAI, openai_chat, "chatcmpl-")


def upstream_codec(kind: str, caller: Caller) -> UpstreamCodec:
    """The wire format the model's channel speaks (OpenAI Responses only for Responses callers)."""
    if kind == ChannelKind.OPENAI and caller is OPENAI_RESPONSES:
        return openai_responses
    return {
        ChannelKind.OPENAI: openai_chat,
        ChannelKind.OPENAI_COMPATIBLE: openai_chat,
        ChannelKind.ANTHROPIC: anthropic,
        ChannelKind.GEMINI: gemini,
    }[kind]


# --- Routes ----------------------------------------------------------------------------------


@dataplane_view(Protocol.OPENAI, methods=("POST",))
async def chat_completions(request, principal):
    return await serve_text(request, principal, OPENAI_CHAT)


@dataplane_view(Protocol.OPENAI, methods=("POST",))
async def responses(request, principal):
    return await serve_text(request, principal, OPENAI_RESPONSES)


@dataplane_view(Protocol.ANTHROPIC, methods=("POST",))
async def messages(request, principal):
    return await serve_text(request, principal, ANTHROPIC)


@dataplane_view(Protocol.GEMINI, methods=("POST",))
async def generate_content(request, principal, model: str, method: str):
    if method not in ("generateContent", "streamGenerateContent"):
        raise ApiError(404, "not_found", f"Unknown method {method!r}.")
    return await serve_text(
        request, principal, GEMINI, model=model, stream=method == "streamGenerateContent"
    )


# --- The call --------------------------------------------------------------------------------


def _parse(caller: Caller, body: dict, model: str | None) -> ChatRequest:
    try:
        return caller.codec.parse_request(body, model=model)
    except ProtocolError as error:
        raise ApiError(400, "invalid_param", error.message, error.param) from None


def request_chars(chat: ChatRequest) -> tuple[int, int]:
    """Characters of text in a request, and its images."""
    chars, images = len(chat.system), 0
    for message in chat.messages:
        for part in message.parts:
            if isinstance(part, TextPart):
                chars += len(part.text)
            elif isinstance(part, ImagePart):
                images += 1
            elif isinstance(part, ToolCall):
                chars += len(part.name) + len(part.arguments)
            elif isinstance(part, ToolResult):
                chars += sum(len(p.text) for p in part.content if isinstance(p, TextPart))
                images += sum(isinstance(p, ImagePart) for p in part.content)
    chars += sum(
        len(json.dumps(t.parameters)) + len(t.name) + len(t.description) for t in chat.tools
    )
    return chars, images


def input_tokens_estimate(chat: ChatRequest, *, worst_case: bool) -> int:
    """Tokens the input may count: three characters a token for the hold's worst case (dense
    text tokenises worse than prose), four for a best guess."""
    chars, images = request_chars(chat)
    per_token = 3 if worst_case else 4
    return math.ceil(chars / per_token) + images * pricing.TOKENS_PER_INPUT_IMAGE


def _check_limits(chat: ChatRequest, target: Target) -> None:
    model = target.model
    if model.family != Family.TEXT:
        raise ApiError(
            400,
            "invalid_param",
            f"'{model.slug}' is an {model.family} model; use "
            + ("/v1/images/generations" if model.family == Family.IMAGE else "/v1/tasks/submit")
            + ".",
            "model",
        )
    if (
        chat.max_tokens is not None
        and model.max_output_tokens
        and (chat.max_tokens > model.max_output_tokens)
    ):
        raise ApiError(
            400,
            "invalid_param",
            f"max_tokens is too large: {model.slug} writes at most "
            f"{model.max_output_tokens} tokens.",
            "max_tokens",
        )
    if model.context_window:
        needed = input_tokens_estimate(chat, worst_case=False) + (chat.max_tokens or 0)
        if needed > model.context_window:
            raise ApiError(
                400,
                "context_length_exceeded",
                f"This request needs about {needed} tokens; {model.slug} has a context window "
                f"of {model.context_window}.",
                "messages",
            )


def _usage_facts(
    principal, target: Target, upstream: Upstream, caller: Caller, usage: Usage, **timing
) -> UsageFacts:
    return UsageFacts(
        model_id=target.model.pk,
        deployment_id=upstream.deployment_id,
        family=Family.TEXT,
        protocol=caller.name,
        api_key_id=principal.key_id,
        project_id=principal.project_id,
        group_id=principal.group_id,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        **timing,
    )


def cost_of(target: Target, usage: Usage) -> int:
    return pricing.text_cost(
        target.model,
        target.multiplier,
        pricing.TokenUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        ),
    )


def _upstream_failure(error: ApiError) -> ApiError:
    """What the caller of a text route sees of a failed upstream call: the last attempt's
    UpstreamError with the provider's Retry-After passed on, or failover's own refusal."""
    if isinstance(error, UpstreamError) and error.retry_after:
        error.headers["Retry-After"] = error.retry_after
    return error


async def serve_text(
    request, principal: KeyPrincipal, caller: Caller, *, model=None, stream=None, body=None
):
    """A text call in ``caller``'s protocol. ``body`` is the parsed request when the caller is
    not an HTTP client (the console's playground); otherwise it is read from ``request``."""
    raw = json_body(request, MAX_BODY_BYTES) if body is None else body
    chat = _parse(caller, raw, model)
    # OpenAI's `metadata` is a map of strings; Anthropic's holds `user_id`, parsed as chat.user.
    metadata = raw.get("metadata") if caller.protocol is Protocol.OPENAI else None
    call_tags = tags.call_tags(request.headers.get(tags.HEADER), metadata=metadata, user=chat.user)
    if stream is not None:
        chat.stream = stream
    target = await resolve_model_for(principal, chat.model)
    chat.model = target.model.slug  # an alias answers with the model it stands for
    _check_limits(chat, target)
    hold = pricing.text_estimate(
        target.model,
        target.multiplier,
        input_tokens=input_tokens_estimate(chat, worst_case=True),
        max_tokens=chat.max_tokens,
    )
    tokens = input_tokens_estimate(chat, worst_case=False) + (
        chat.max_tokens or target.model.max_output_tokens or 0
    )
    metered = await meter.admit(
        principal, reference=request.bytespike_request_id, credits=hold, tokens=tokens,
        tags=call_tags,
    )  # fmt: skip
    response_id = f"{caller.id_prefix}{ULID()}"
    started = time.monotonic()
    if chat.stream:
        return await _open_stream(principal, caller, chat, target, metered, response_id, started)

    async def attempt(upstream: Upstream):
        codec = upstream_codec(upstream.route.kind, caller)
        call = codec.upstream_request(chat, upstream.upstream_model)
        return codec.parse_response(await send_json(upstream.route, call))

    try:
        upstream, answer = await first_answer(target, attempt, started=started)
    except ApiError as error:
        await metered.release()
        raise _upstream_failure(error) from None
    except BaseException:  # the client went away (cancelled): the call is free
        await asyncio.shield(metered.release())
        raise
    latency = int((time.monotonic() - started) * 1000)
    settlement = await metered.settle(
        cost_of(target, answer.usage),
        _usage_facts(principal, target, upstream, caller, answer.usage, latency_ms=latency),
        tokens=answer.usage.total_input + answer.usage.output_tokens,
    )
    answer.id = response_id
    answer.model = target.model.slug
    response = json_response(caller.codec.render_response(answer, chat))
    response[UPSTREAM_HEADER] = upstream.name
    for name, value in metered.headers(settlement.charged).items():
        response[name] = value
    return response


async def _open_stream(principal, caller, chat, target, metered, response_id, started):
    """Open the upstream stream and read its first event before answering: an upstream that
    refuses, or breaks before its first event, fails over to the next deployment, and when none
    answers the caller gets a real HTTP error status. Then stream the events, translated."""

    async def attempt(upstream: Upstream):
        codec = upstream_codec(upstream.route.kind, caller)
        call = codec.upstream_request(chat, upstream.upstream_model)
        stack = AsyncExitStack()
        try:
            events = await stack.enter_async_context(open_stream(upstream.route, call))
            first = await anext(events, None)
        except BaseException:
            await stack.aclose()
            raise
        return codec, stack, _starting_with(first, events)

    try:
        upstream, (codec, stack, events) = await first_answer(target, attempt, started=started)
    except ApiError as error:
        await metered.release()
        raise _upstream_failure(error) from None
    except BaseException:
        await asyncio.shield(metered.release())
        raise
    metrics.stream_started(target.model.slug)
    body = TextStream(
        access=logs.defer(),  # the request's line is logged when the stream ends
        principal=principal,
        caller=caller,
        chat=chat,
        target=target,
        upstream=upstream,
        parser=codec.StreamParser(),
        events=events,
        stack=stack,
        metered=metered,
        response_id=response_id,
        started=started,
    )
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    response[UPSTREAM_HEADER] = upstream.name
    for name, value in metered.headers().items():
        response[name] = value
    return response


async def _starting_with(first, events):
    """``events`` with its already-read first event put back in front."""
    if first is None:
        return
    yield first
    async for event in events:
        yield event


class TextStream:
    """The body of a streamed answer: upstream events, translated into the caller's frames.

    Django calls ``close()`` (in a worker thread) when the response ends, finished or not. A
    stream the client left early is billed there for what it was sent (the upstream's usage if
    it reported any, else the delivered text at four characters a token), and its upstream
    connection is closed. A stream the upstream broke is free.
    """

    def __init__(self, *, principal, caller, chat, target, upstream, parser, events, stack,
                 metered, response_id, started, access=None):  # fmt: skip
        self.access = access
        self.ending_as = "complete"  # how the stream ended, for the access line
        self.principal = principal
        self.caller = caller
        self.chat = chat
        self.target = target
        self.upstream = upstream
        self.parser = parser
        self.events = events
        self.stack = stack
        self.metered = metered
        self.reference = metered.reference
        self.started = started
        self.renderer = caller.codec.StreamRenderer(chat, response_id, int(time.time()))
        self.usage: Usage | None = None
        self.delivered_chars = 0
        self.first_token_ms: int | None = None
        self.outcome: str | None = None
        self._closing = threading.Lock()
        self._loop = None
        self._generator = None
        self._ending: MessageEnd | None = None

    def __aiter__(self):
        self._loop = asyncio.get_running_loop()
        self._generator = self._frames()
        return self._generator

    async def _frames(self):
        with self._resumed():
            try:
                try:
                    async for sse in self.events:
                        for event in self.parser.feed(sse):
                            for frame in self._render(event):
                                yield frame
                    for event in self.parser.close():
                        for frame in self._render(event):
                            yield frame
                except (UpstreamError, UpstreamFormatError) as error:
                    # The books first: nothing may come between the break and the claim that makes
                    # the call free (a client leaving meanwhile would bill what it was sent).
                    await self._close_books(failed=True)
                    self.ending_as = "upstream_error"
                    await breakers.failed(self.upstream.deployment_id)
                    message = getattr(error, "message", "The upstream answer could not be read.")
                    for frame in self.renderer.fail(message):
                        yield frame
                    return
                if not await self._close_books(failed=False):
                    # Unbilled, so not a success: the caller gets the protocol's error event, not a
                    # connection cut without an end.
                    self.ending_as = "unbilled"
                    for frame in self.renderer.fail(unavailable().message):
                        yield frame
                    return
                # The answer's end (and its usage) goes out only now that the call is billed: a
                # client that saw the end of its answer has been charged for it.
                ending = self.renderer.feed(self._ending) if self._ending else []
                for frame in [*ending, *self.renderer.finish()]:
                    yield frame
            finally:
                await self.stack.aclose()

    def _resumed(self):
        """The request's log context (and access line) while the stream is sent or closed."""
        return self.access.resumed() if self.access is not None else nullcontext()

    async def _close_books(self, *, failed: bool) -> bool:
        """Settle or release; False if the database cannot be reached (restarting, failing
        over): the call is then free."""
        if not self._claim(failed=failed):
            return True
        try:
            if failed:
                await self.metered.release()
            else:
                cost, facts, tokens = self._settlement()
                await self.metered.settle(cost, facts, tokens=tokens)
        except DatabaseError:
            logger.warning("database unavailable at the end of %s", self.reference, exc_info=True)
            return False
        return True

    def _claim(self, *, failed: bool) -> bool:
        """The books are closed once (the stream's end and close() may both get here)."""
        with self._closing:
            if self.outcome is not None:
                return False
            self.outcome = "released" if failed else "settled"
            return True

    def _render(self, event) -> list[bytes]:
        if isinstance(event, TextDelta | ToolCallDelta):
            if self.first_token_ms is None:
                self.first_token_ms = self._elapsed_ms()
            self.delivered_chars += len(
                event.text if isinstance(event, TextDelta) else event.arguments
            )
        elif isinstance(event, MessageStart | MessageEnd):
            self.usage = _merge(self.usage, event.usage)
        if isinstance(event, MessageEnd):
            self._ending = event  # rendered once the call is billed (_frames)
            return []
        return self.renderer.feed(event)

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def _billable_usage(self) -> Usage:
        usage = self.usage or Usage()
        if not usage.total_input:
            usage = Usage(
                input_tokens=input_tokens_estimate(self.chat, worst_case=False),
                output_tokens=usage.output_tokens,
            )
        if not usage.output_tokens:
            usage.output_tokens = math.ceil(self.delivered_chars / 4)
        return usage

    def _settlement(self) -> tuple:
        usage = self._billable_usage()
        facts = _usage_facts(
            self.principal,
            self.target,
            self.upstream,
            self.caller,
            usage,
            stream=True,
            latency_ms=self._elapsed_ms(),
            ttft_ms=self.first_token_ms,
        )
        return cost_of(self.target, usage), facts, usage.total_input + usage.output_tokens

    def close(self) -> None:
        """Called by Django when the response is done; bills a stream the client left early,
        then logs the request's access line."""
        with self._resumed():
            if self._claim(failed=False):
                self.ending_as = "client_left"
                logger.info("stream %s ended early: billing what was delivered", self.reference)
                cost, facts, tokens = self._settlement()
                try:
                    self.metered.settle_now(cost, facts, tokens=tokens)
                except DatabaseError:
                    logger.warning("database unavailable to bill %s", self.reference, exc_info=True)
            if self.access is not None:
                self.access.log(stream_end=self.ending_as)
        generator, loop = self._generator, self._loop
        if generator is not None and loop is not None and not loop.is_closed():
            # Close the upstream connection now, not whenever the generator is collected.
            asyncio.run_coroutine_threadsafe(generator.aclose(), loop)


def _merge(known: Usage | None, reported: Usage) -> Usage:
    """Upstreams report input tokens early and output at the end; keep the largest of each."""
    if known is None:
        return reported
    return Usage(
        input_tokens=max(known.input_tokens, reported.input_tokens),
        output_tokens=max(known.output_tokens, reported.output_tokens),
        cache_read_tokens=max(known.cache_read_tokens, reported.cache_read_tokens),
        cache_write_tokens=max(known.cache_write_tokens, reported.cache_write_tokens),
        reasoning_tokens=max(known.reasoning_tokens, reported.reasoning_tokens),
    )
