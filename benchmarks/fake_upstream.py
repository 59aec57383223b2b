"""A fake OpenAI-compatible upstream for benchmarks: a bare ASGI app that answers
POST /v1/chat/completions at once (JSON, or an SSE stream of a few chunks), so what is measured
is the gateway, not the provider. About 11,000 calls/s from one process on the 2-core machine.

    uv run uvicorn benchmarks.fake_upstream:app --port 9100 --no-access-log \
        --loop uvloop --http httptools
"""

import json

ANSWER = json.dumps(
    {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the fake upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }
).encode()


def _chunk(delta: dict, finish=None, usage=None) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "fake",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


STREAM = b"".join(
    [
        _chunk({"role": "assistant", "content": ""}),
        *(_chunk({"content": word + " "}) for word in ["Hello", "from", "the", "fake", "upstream"]),
        _chunk({}, finish="stop"),
        _chunk({}, usage={"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}),
        b"data: [DONE]\n\n",
    ]
)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    streaming = b'"stream": true' in body or b'"stream":true' in body
    headers = [(b"content-type", b"text/event-stream" if streaming else b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": STREAM if streaming else ANSWER})
