"""Hostile requests for every data-plane route, in every protocol it speaks.

Each route starts from valid requests of its protocol (text, system prompts, turns, images,
tools and tool results, streaming; image sizes and formats; task params, idempotency ids and
callbacks) and hypothesis breaks them (tests/fuzz/strategies.py), or sends a body that is not a
JSON object at all; multipart forms with real and fake images; odd query strings, path ids and
Last-Event-IDs; now and then a method the route does not take, and for streams a client that
hangs up after the first event. The key is sent the ways clients send it, now and then a wrong
one. Requests go to the production ASGI application (tests/fuzz/asgi.py), so the data plane
runs on its own middleware-free handler, as it does behind uvicorn.

After every example:
- no server error: a 5xx only when the request asked the sandbox upstream to fail (a
  ``[sandbox:...]`` knob), and then the gateway's 502 or 504;
- an error is JSON in the envelope of the protocol called, and every answer has a request id;
- a failed call is free: no usage row and no charge;
- no hold is left open except those of pending or running tasks (which hold their estimate),
  and both accounts' books balance (billing.invariants.wallet_problems);
- the other account's task was not touched.
"""

import base64
import json
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.invariants import wallet_problems
from billing.metering import meter
from billing.models import Hold, LedgerEntry, UsageRecord
from generation.dataplane import tasks as dataplane_tasks
from generation.models import Task, TaskStatus
from tests.fuzz import asgi
from tests.fuzz.conftest import FUZZ, PUBLIC_HOST, FuzzAccount
from tests.fuzz.strategies import NASTY_STRINGS, encoded, mutated, raw_bodies
from tests.protocols import WEATHER, png

pytestmark = pytest.mark.django_db


PNG = png(8, 8)
PNG_B64 = base64.b64encode(PNG).decode()
PNG_URL = f"data:image/png;base64,{PNG_B64}"

# Text models by the group whose key reaches them (their upstreams speak every protocol).
TEXT_MODELS = {
    "default": ["gpt-4.1", "gpt-4.1-mini"],
    "claude-default": ["claude-haiku-4-5", "deepseek-chat", "gemini-2.5-flash"],
    "gemini-default": ["gemini-2.5-flash", "gemini-2.5-pro"],
    "enterprise": ["o3", "claude-opus-4-1"],
}
OTHER_MODELS = ["gpt-image-1", "veo-3-fast", "no-such-model", "", "models/gpt-4.1"]


# --- Valid requests, one list per protocol ---------------------------------------------------


def chat_bodies(model: str) -> list[dict]:
    return [
        {"model": model, "max_tokens": 64, "temperature": 0.5,
         "messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Hello"}]},
        {"model": model, "stream": True, "stream_options": {"include_usage": True},
         "messages": [{"role": "user", "content": [
             {"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": PNG_URL}}]}]},
        {"model": model, "tool_choice": "auto", "stop": ["\n\n"], "user": "u-1",
         "tools": [{"type": "function", "function": {
             "name": "weather", "description": "Weather", "parameters": WEATHER}}],
         "messages": [
             {"role": "user", "content": "Weather in Oslo?"},
             {"role": "assistant", "content": None, "tool_calls": [
                 {"id": "call_1", "type": "function",
                  "function": {"name": "weather", "arguments": '{"location": "Oslo"}'}}]},
             {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}]},
    ]  # fmt: skip


def responses_bodies(model: str) -> list[dict]:
    return [
        {"model": model, "input": "Hello", "instructions": "Be brief.", "max_output_tokens": 64},
        {"model": model, "stream": True, "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "Describe this"},
            {"type": "input_image", "image_url": PNG_URL}]}]},
        {"model": model, "tools": [{"type": "function", "name": "weather",
                                     "parameters": WEATHER}],
         "input": [{"role": "user", "content": "Weather in Oslo?"},
                   {"type": "function_call", "call_id": "call_1", "name": "weather",
                    "arguments": '{"location": "Oslo"}'},
                   {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"}]},
    ]  # fmt: skip


def messages_bodies(model: str) -> list[dict]:
    return [
        {"model": model, "max_tokens": 64, "system": "Be brief.",
         "messages": [{"role": "user", "content": "Hello"}]},
        {"model": model, "max_tokens": 64, "stream": True,
         "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG_B64}}]}]},
        {"model": model, "max_tokens": 64, "temperature": 0.2, "stop_sequences": ["END"],
         "metadata": {"user_id": "u-1"}, "tool_choice": {"type": "auto"},
         "tools": [{"name": "weather", "description": "Weather", "input_schema": WEATHER}],
         "messages": [
             {"role": "user", "content": "Weather in Oslo?"},
             {"role": "assistant", "content": [
                 {"type": "tool_use", "id": "toolu_1", "name": "weather",
                  "input": {"location": "Oslo"}}]},
             {"role": "user", "content": [
                 {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}]}]},
    ]  # fmt: skip


def gemini_bodies(model: str) -> list[dict]:
    return [
        {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
         "systemInstruction": {"parts": [{"text": "Be brief."}]},
         "generationConfig": {"maxOutputTokens": 64, "temperature": 0.5,
                              "stopSequences": ["END"]}},
        {"contents": [{"role": "user", "parts": [
            {"text": "What is this?"},
            {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]}]},
        {"toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
         "tools": [{"functionDeclarations": [{"name": "weather", "description": "Weather",
                                              "parameters": {"type": "OBJECT", "properties": {
                                                  "location": {"type": "STRING"}}}}]}],
         "contents": [
             {"role": "user", "parts": [{"text": "Weather in Oslo?"}]},
             {"role": "model", "parts": [{"functionCall": {"name": "weather",
                                                            "args": {"location": "Oslo"}}}]},
             {"role": "user", "parts": [{"functionResponse": {
                 "name": "weather", "response": {"result": "Sunny"}}}]}]},
    ]  # fmt: skip


def image_bodies(model: str) -> list[dict]:
    return [
        {"model": model, "prompt": "A paper boat", "n": 2, "size": "1024x1024",
         "quality": "low", "response_format": "url", "output_format": "png"},
        {"model": model, "prompt": "A fox", "response_format": "b64_json",
         "output_format": "webp", "size": "auto", "quality": "auto"},
    ]  # fmt: skip


def task_bodies(model: str) -> list[dict]:
    video = {"model": model, "params": {"prompt": "Waves", "duration": 4,
                                        "aspect_ratio": "16:9", "seed": 7}}  # fmt: skip
    image = {"model": model, "params": {"prompt": "A fox", "n": 1, "quality": "low"}}
    params = video if model in ("veo-3-fast", "sora-2") else image
    return [
        params,
        {**params, "out_task_id": "job-1", "callback_url": f"https://{PUBLIC_HOST}/hook"},
        {"model": model, **params["params"]},  # params at the top level
        {**params, "callback_url": "https://10.0.0.1/hook"},
    ]


TASK_MODELS = {"gemini-default": ["veo-3-fast", "imagen-4"], "default": ["sora-2", "gpt-image-1"]}


# --- Requests --------------------------------------------------------------------------------


@dataclass
class Upload:
    filename: str
    data: bytes


@dataclass
class Call:
    """One request; ``key`` names a key of FuzzAccount.keys, or is a literal wrong key."""

    method: str
    path: str
    protocol: str  # whose envelope an error must be in: openai, anthropic or gemini
    key: str = "default"
    auth: str = "x-api-key"
    body: bytes | dict | None = None  # dict: multipart form fields (text, or a list of files)
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    query: dict = field(default_factory=dict)
    leave_after: int = 0  # hang up after this many events of a stream (0: read it all)

    def asks_sandbox_to_fail(self) -> bool:
        """Whether a ``[sandbox:...]`` knob is anywhere in the request."""
        sent = self.body if isinstance(self.body, bytes) else repr(self.body).encode()
        return b"[sandbox:" in sent + repr(self.query).encode()

    def __repr__(self):
        body = self.body
        if isinstance(body, bytes) and len(body) > 600:
            body = body[:300] + b"..." + body[-100:] + f" ({len(body)} bytes)".encode()
        leaves = f" leave_after={self.leave_after}" if self.leave_after else ""
        return (
            f"Call({self.method} {self.path} query={self.query!r} key={self.key}/{self.auth} "
            f"headers={self.headers!r} content_type={self.content_type!r} body={body!r}{leaves})"
        )

    def _repr_pretty_(self, printer, cycle):  # how hypothesis shows a failing example
        printer.text(repr(self))


WRONG_KEYS = [
    "",
    "sk-byts-",
    "sk-byts-" + "A" * 40,
    "sk-byts-admin-" + "b" * 40,
    "Bearer",
    "\u00e9",
]
AUTH_STYLES = ["x-api-key", "bearer", "x-goog-api-key", "query"]


@st.composite
def credentials(draw, group: str) -> tuple[str, str]:
    """The key of ``group`` (now and then another group's, the limited one, or a wrong one)
    and how it is sent."""
    # One call in ten or so with a wrong key: most should get past the key to the route's code.
    keys = [group] * 40 + ["limited", "default", "claude-default"] * 2 + WRONG_KEYS
    return draw(st.sampled_from(keys)), draw(st.sampled_from(AUTH_STYLES))


@st.composite
def json_body(draw, valid: list[dict]) -> bytes:
    """A valid body broken by hypothesis, or something that is not a JSON object."""
    if draw(st.integers(0, 5)) == 0:
        return draw(raw_bodies())
    return draw(mutated(draw(st.sampled_from(valid))).flatmap(encoded))


def text_model(draw, group: str) -> str:
    """Mostly a model the group has; now and then one of another kind, or none at all."""
    return draw(st.sampled_from(TEXT_MODELS[group] * 4 + OTHER_MODELS))


@st.composite
def text_calls(draw, path: str, protocol: str, bodies) -> Call:
    group = draw(st.sampled_from(list(TEXT_MODELS)))
    key, auth = draw(credentials(group))
    headers = {}
    if protocol == "anthropic":
        headers["anthropic-version"] = draw(st.sampled_from(["2023-06-01", "2099-01-01", ""]))
    return Call(
        "post", path, protocol, key, auth, draw(json_body(bodies(text_model(draw, group)))),
        headers=headers, leave_after=draw(st.sampled_from([0, 0, 0, 1, 3])),
    )  # fmt: skip


path_segments = st.sampled_from(["", "x", "models", "..", "%00", "a:b", "\u00e9"]) | st.text(
    st.characters(exclude_characters="/?#", exclude_categories=["Cs"]), max_size=20
)


@st.composite
def gemini_calls(draw) -> Call:
    group = draw(st.sampled_from(list(TEXT_MODELS)))
    key, auth = draw(credentials(group))
    model = text_model(draw, group) if draw(st.integers(0, 4)) else draw(path_segments)
    method = draw(
        st.sampled_from(["generateContent"] * 3 + ["streamGenerateContent"] * 2)
        | st.sampled_from(["countTokens", "embedContent", ""])
    )
    prefix = draw(st.sampled_from(["/v1beta/models/", "/v1/models/"]))
    query = {"alt": "sse"} if method == "streamGenerateContent" and draw(st.booleans()) else {}
    body = draw(json_body(gemini_bodies(model)))
    return Call("post", f"{prefix}{quote(model, safe='')}:{method}", "gemini", key, auth, body,
                query=query, leave_after=draw(st.sampled_from([0, 0, 0, 1, 3])))  # fmt: skip


@st.composite
def image_calls(draw) -> Call:
    group = draw(st.sampled_from(["default", "gemini-default"]))
    key, auth = draw(credentials(group))
    model = {"default": "gpt-image-1", "gemini-default": "imagen-4"}[group]
    model = draw(st.sampled_from([model] * 5 + ["gpt-4.1", "veo-3-fast", "nope"]))
    body = draw(json_body(image_bodies(model)))
    return Call("post", "/v1/images/generations", "openai", key, auth, body)


form_values = (
    st.sampled_from(NASTY_STRINGS)
    | st.text(max_size=20)
    | st.sampled_from(
        ["gpt-image-1", "1", "4", "9", "-1", "1024x1024", "13x13", "auto", "low", "b64_json", "url"]
    )
)


@st.composite
def edit_calls(draw) -> Call:
    """Multipart forms: images (real or not), a mask, and form fields, each possibly broken."""
    key, auth = draw(credentials("default"))
    fields = {"model": "gpt-image-1", "prompt": "Make it blue", "n": "1", "size": "1024x1024",
              "response_format": draw(st.sampled_from(["url", "b64_json"]))}  # fmt: skip
    for name in draw(st.lists(st.sampled_from([*fields, "quality", "extra"]), max_size=3)):
        if draw(st.booleans()):
            fields.pop(name, None)
        else:
            fields[name] = draw(form_values)
    files = st.sampled_from(
        [PNG, png(16, 16)] * 3 + [b"", b"GIF89a", b"not an image", PNG[:40]]
    )  # fmt: skip
    images = draw(st.sampled_from([[], [PNG] * 17] + [None] * 8)) or draw(
        st.lists(files, min_size=1, max_size=4)
    )
    form: dict[str, str | list[Upload]] = dict(fields)
    if images:
        field_name = draw(st.sampled_from(["image", "image[]"]))
        form[field_name] = [Upload(f"in{i}.png", data) for i, data in enumerate(images)]
    if draw(st.booleans()):
        form["mask"] = [Upload("mask.png", draw(files))]
    if draw(st.integers(0, 5)) == 0:  # not multipart, or multipart with a broken boundary
        content_type = draw(st.sampled_from(
            ["application/json", "multipart/form-data", "multipart/form-data; boundary=x",
             "text/plain"]
        ))  # fmt: skip
        return Call("post", "/v1/images/edits", "openai", key, auth, draw(raw_bodies()),
                    content_type=content_type)  # fmt: skip
    return Call("post", "/v1/images/edits", "openai", key, auth, form, content_type="multipart")


query_values = st.sampled_from(
    ["2026-11-01", "2026-11-01T10:00:00", "2026-11-01T10:00:00+05:00", "2026-02-30", "0",
     "-1", "9999-12-31", "0001-01-01", "2026-11-01T25:00", "1e9", "x" * 300]
) | st.sampled_from(NASTY_STRINGS) | st.text(max_size=30)  # fmt: skip


extra_query = st.dictionaries(st.text(max_size=10), query_values, max_size=2)

OUT_TASK_IDS = ["job-1", "job-2", "", " ", "x" * 129, "\u00e9t\u00e9"]


@st.composite
def submit_calls(draw) -> Call:
    group = draw(st.sampled_from(list(TASK_MODELS)))
    key, auth = draw(credentials(group))
    model = draw(st.sampled_from(TASK_MODELS[group] * 3 + ["gpt-4.1", "nope"]))
    valid = task_bodies(model)
    if draw(st.booleans()):
        valid = [{**body, "out_task_id": draw(st.sampled_from(OUT_TASK_IDS))} for body in valid]
    return Call("post", "/v1/tasks/submit", "openai", key, auth, draw(json_body(valid)))


def task_id(draw, fuzz: FuzzAccount) -> str:
    """A task of the account, the other account's task, or an id that is no task."""
    real = [*fuzz.task_ids, fuzz.their_task_id]
    return draw(st.sampled_from(real) | st.sampled_from(["task_", "task_01", "", "x" * 65])
                | st.text(max_size=30))  # fmt: skip


@st.composite
def query_calls(draw, fuzz: FuzzAccount) -> Call:
    key, auth = draw(credentials("gemini-default"))
    valid = [{"task_id": task_id(draw, fuzz)}, {"out_task_id": draw(st.sampled_from(OUT_TASK_IDS))},
             {"task_id": task_id(draw, fuzz), "out_task_id": "job-1"}]  # fmt: skip
    if draw(st.booleans()):
        query = {**draw(st.sampled_from(valid)), **draw(extra_query)}
        return Call("get", "/v1/tasks/query", "openai", key, auth, query=query)
    return Call("post", "/v1/tasks/query", "openai", key, auth, draw(json_body(valid)))


@st.composite
def cancel_calls(draw, fuzz: FuzzAccount) -> Call:
    key, auth = draw(credentials("gemini-default"))
    if draw(st.booleans()):
        path = f"/v1/tasks/cancel/{quote(task_id(draw, fuzz), safe='')}"
        return Call("post", path, "openai", key, auth, draw(st.sampled_from([b"", b"{}"])))
    valid = [{"task_id": task_id(draw, fuzz)}, {"out_task_id": draw(st.sampled_from(OUT_TASK_IDS))}]
    return Call("post", "/v1/tasks/cancel", "openai", key, auth, draw(json_body(valid)))


@st.composite
def stream_calls(draw, fuzz: FuzzAccount) -> Call:
    """A task's event stream, hung up on after its first event (a working task's stream would
    go on until the task ends)."""
    key, auth = draw(credentials("gemini-default"))
    path = f"/v1/tasks/stream/{quote(task_id(draw, fuzz), safe='')}"
    headers = {}
    if draw(st.booleans()):
        headers["last-event-id"] = draw(
            st.sampled_from(["0", "1", "2", "99", "-1", "x", "9" * 40]) | query_values
        )
    return Call("get", path, "openai", key, auth, headers=headers, leave_after=1)


@st.composite
def listing_calls(draw, path: str) -> Call:
    """GET routes: the models lists, /v1/balance and /v1/usage, with strange query strings."""
    group = draw(st.sampled_from(list(TEXT_MODELS)))
    key, auth = draw(credentials(group))
    names = st.sampled_from(["since", "until", "api_key_id", "page", "pageSize", "limit"])
    query = draw(st.dictionaries(names | st.text(max_size=10), query_values, max_size=3))
    headers = {}
    if path.startswith("/v1/") and draw(st.booleans()):
        headers["anthropic-version"] = draw(st.sampled_from(["2023-06-01", ""]))
    protocol = (
        "gemini" if path.startswith("/v1beta/")
        else "anthropic" if "anthropic-version" in headers else "openai"
    )  # fmt: skip
    return Call("get", path, protocol, key, auth, query=query, headers=headers)


def route_calls(route: str, fuzz: FuzzAccount):
    return {
        "chat": text_calls("/v1/chat/completions", "openai", chat_bodies),
        "responses": text_calls("/v1/responses", "openai", responses_bodies),
        "messages": text_calls("/v1/messages", "anthropic", messages_bodies),
        "gemini": gemini_calls(),
        "images": image_calls(),
        "edits": edit_calls(),
        "submit": submit_calls(),
        "query": query_calls(fuzz),
        "cancel": cancel_calls(fuzz),
        "stream": stream_calls(fuzz),
        "models": listing_calls("/v1/models"),
        "gemini-models": listing_calls("/v1beta/models"),
        "balance": listing_calls("/v1/balance"),
        "usage": listing_calls("/v1/usage"),
    }[route]


# --- Sending and checking --------------------------------------------------------------------

BOUNDARY = "fuzzboundary"
# Control characters no HTTP server lets through in a header value (uvicorn refuses the request).
HEADER_UNSENDABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def multipart(form: dict) -> bytes:
    """multipart/form-data as a client writes it; text as UTF-8, lone surrogates and all (Django's
    own encoder refuses those, a broken client does not)."""
    parts = []
    for name, value in form.items():
        for item in value if isinstance(value, list) else [value]:
            disposition = f'form-data; name="{name}"'
            if isinstance(item, Upload):
                disposition += f'; filename="{item.filename}"\r\nContent-Type: image/png'
                data = item.data
            else:
                data = item.encode("utf-8", "surrogatepass")
            head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n"
            parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def send(fuzz: FuzzAccount, call: Call) -> asgi.Answer:
    secret = fuzz.keys.get(call.key, call.key)
    headers = dict(call.headers)
    query = dict(call.query)
    if call.auth == "x-api-key":
        headers["x-api-key"] = secret
    elif call.auth == "bearer":
        headers["authorization"] = f"Bearer {secret}"
    elif call.auth == "x-goog-api-key":
        headers["x-goog-api-key"] = secret
    else:
        query["key"] = secret
    body = call.body or b""
    content_type = call.content_type
    if call.content_type == "multipart":
        body = multipart(call.body)
        content_type = f"multipart/form-data; boundary={BOUNDARY}"
    if call.method != "get":
        headers["content-type"] = content_type
    # Sent as a client would put them on the wire: text as UTF-8, lone surrogates and all.
    target = call.path
    if query:
        target += "?" + urlencode(query, encoding="utf-8", errors="surrogatepass")
    raw_headers = [
        (name.lower().encode(), HEADER_UNSENDABLE.sub("", value).encode("utf-8", "surrogatepass"))
        for name, value in headers.items()
    ]
    return asgi.request(call.method, target, raw_headers, body, leave_after=call.leave_after)


def assert_envelope(protocol: str, status: int, body) -> None:
    assert isinstance(body, dict), body
    error = body.get("error")
    assert isinstance(error, dict), body
    if protocol == "anthropic":
        assert set(body) == {"type", "error"} and body["type"] == "error", body
        assert set(error) == {"type", "message"}, body
        assert isinstance(error["type"], str) and isinstance(error["message"], str), body
    elif protocol == "gemini":
        assert set(body) == {"error"} and set(error) == {"code", "message", "status"}, body
        assert error["code"] == status and isinstance(error["message"], str), body
        assert isinstance(error["status"], str) and error["status"].isupper(), body
    else:
        assert set(body) == {"error"}, body
        assert set(error) == {"message", "type", "param", "code"}, body
        assert isinstance(error["message"], str) and isinstance(error["type"], str), body
        assert error["param"] is None or isinstance(error["param"], str), body
        assert error["code"] is None or isinstance(error["code"], str), body
    assert error["message"], body


def _billed() -> tuple[int, int]:
    return UsageRecord.objects.count(), LedgerEntry.objects.filter(kind="charge").count()


def assert_books_clean(fuzz: FuzzAccount) -> None:
    working = Task.objects.filter(status__in=[TaskStatus.PENDING, TaskStatus.RUNNING])
    stray = (
        Hold.objects.filter(status="open")
        .exclude(kind="lease")
        .exclude(reference__in=working.values("public_id"))
    )
    assert not stray.exists(), list(stray.values("reference", "amount"))
    # A busy account's lease stays open between calls: the process's own, all of it free.
    for lease in Hold.objects.filter(status="open", kind="lease"):
        mine = meter.leases.leases.get(lease.account_id)
        assert mine is not None and mine.reference == lease.reference
        assert (mine.amount, mine.reserved, mine.consumed) == (lease.amount, 0, 0)
    for account in (fuzz.account, fuzz.world.outsider_account):
        assert wallet_problems(account.pk) == []
    assert Task.objects.get(public_id=fuzz.their_task_id).status == TaskStatus.PENDING


def check(fuzz: FuzzAccount, call: Call) -> asgi.Answer:
    billed = _billed()
    answer = send(fuzz, call)
    status, raw = answer.status, answer.body
    if call.asks_sandbox_to_fail():
        assert status < 500 or status in (502, 504), (status, raw[:500])
    else:
        assert status < 500, (status, raw[:500])
    assert answer.headers.get("x-request-id", "").startswith("req_"), (status, raw[:300])
    content_type = answer.headers.get("content-type", "")
    if status >= 400:
        assert content_type.startswith("application/json"), (status, content_type, raw[:300])
        assert_envelope(call.protocol, status, json.loads(raw))
        assert _billed() == billed, "a failed call was billed"
    elif content_type.startswith("application/json"):
        json.loads(raw)
    else:
        assert content_type.startswith("text/event-stream"), (status, content_type)
    assert_books_clean(fuzz)
    return answer


ROUTES = [
    "chat", "responses", "messages", "gemini", "images", "edits", "submit", "query", "cancel",
    "stream", "models", "gemini-models", "balance", "usage",
]  # fmt: skip


@pytest.fixture
def in_process(settings, monkeypatch, keep_test_connection):
    """What the production server does differently from one test's single connection: task
    streams hand their connection back after each read (here it is the test's, which holds its
    transaction) and send keepalives every 15 s (here at once, so a stream the fuzzer hangs up
    on says something first)."""
    monkeypatch.setattr(dataplane_tasks, "connections", SimpleNamespace(close_all=lambda: None))
    settings.BYTESPIKE_SSE_KEEPALIVE_SECONDS = 0.05
    # The fuzzer asks the sandbox to fail again and again: breakers would open and refuse the
    # examples after, which tests/generation/test_breakers.py covers, not this.
    settings.BYTESPIKE_BREAKER_FAILURES = 10**9
    settings.BYTESPIKE_BREAKER_ERROR_RATE = 2.0


@st.composite
def any_method(draw, calls):
    """A route's calls, now and then with a method the route does not take."""
    call = draw(calls)
    if draw(st.integers(0, 14)) == 0:
        call.method = draw(st.sampled_from(["get", "post", "put", "patch", "delete"]))
    return call


@pytest.mark.parametrize("route", ROUTES)
@FUZZ
@given(data=st.data())
def test_hostile_requests_get_the_protocols_errors_and_leave_the_books_clean(
    route, data, fuzz_account, in_process
):
    call = data.draw(any_method(route_calls(route, fuzz_account)), label="call")
    check(fuzz_account, call)


# --- Streams, whole or left ---------------------------------------------------------------------

STREAM_KNOBS = ["", "", "[sandbox:words=300]", "[sandbox:tool]", "[sandbox:cut]",
                "[sandbox:status=500]", "[sandbox:status=429]"]  # fmt: skip


@st.composite
def stream_text_calls(draw, protocol: str) -> Call:
    """A valid streamed call in ``protocol`` to any text model of the key's group (so through
    each translation), with an upstream that may write long, call a tool, cut the stream or
    fail; the client reads it all or hangs up after a few events."""
    group = draw(st.sampled_from(list(TEXT_MODELS)))
    model = draw(st.sampled_from(TEXT_MODELS[group]))
    prompt = "Tell me about lighthouses " + draw(st.sampled_from(STREAM_KNOBS))
    tools = [{"type": "function", "function": {"name": "weather", "parameters": WEATHER}}]
    query, headers = {}, {}
    if protocol == "chat":
        path, envelope = "/v1/chat/completions", "openai"
        body = {
            "model": model,
            "stream": True,
            "messages": [{"role": "user", "content": prompt}],
            "stream_options": {"include_usage": draw(st.booleans())},
            "tools": tools,
        }
    elif protocol == "responses":
        path, envelope = "/v1/responses", "openai"
        body = {
            "model": model,
            "stream": True,
            "input": prompt,
            "tools": [{"type": "function", "name": "weather", "parameters": WEATHER}],
        }
    elif protocol == "messages":
        path, envelope = "/v1/messages", "anthropic"
        headers["anthropic-version"] = "2023-06-01"
        body = {
            "model": model,
            "stream": True,
            "max_tokens": draw(st.sampled_from([5, 500])),
            "messages": [{"role": "user", "content": prompt}],
            "tools": [{"name": "weather", "input_schema": WEATHER}],
        }
    else:
        path, envelope = f"/v1beta/models/{model}:streamGenerateContent", "gemini"
        query["alt"] = "sse"
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    key, auth = group, draw(st.sampled_from(AUTH_STYLES))
    return Call("post", path, envelope, key, auth, json.dumps(body).encode(), headers=headers,
                query=query, leave_after=draw(st.sampled_from([0, 0, 1, 2, 3, 5, 20])))  # fmt: skip


@pytest.mark.parametrize("protocol", ["chat", "responses", "messages", "gemini"])
@FUZZ
@given(data=st.data())
def test_streams_read_whole_or_left_early_are_billed_once_for_what_was_sent(
    protocol, data, fuzz_account, in_process
):
    """Besides what every call must satisfy: a stream that answered is billed exactly once
    (read to the end, or left early: for what was sent), unless its upstream broke, which is
    free."""
    call = data.draw(stream_text_calls(protocol), label="call")
    calls_before = UsageRecord.objects.count()
    answer = check(fuzz_account, call)
    billed = UsageRecord.objects.count() - calls_before
    if answer.status == 200:
        upstream_may_break = b"[sandbox:cut]" in call.body
        assert billed in ((0, 1) if upstream_may_break else (1,)), (billed, answer.body[-300:])
