"""Code that calls the gateway, for people to copy: the quick start (curl and the OpenAI,
Anthropic and Google GenAI Python SDKs) and the playground's "view code" of a chat request.

Every snippet is built from what is real for the reader: the deployment's base URL, a model
their key may call, and either the new key's secret (in the response that shows it, once) or
``$BYTESPIKE_API_KEY`` for a secret kept in the environment.
"""

import json
from dataclasses import dataclass

from catalogue.models import Family
from catalogue.selectors import models_in_group
from keys.models import ApiKey

ENV_VAR = "BYTESPIKE_API_KEY"
HELLO = "Say hello in five words."


@dataclass(frozen=True)
class Snippet:
    id: str  # unique in a page: element ids and copy buttons use it
    label: str
    language: str
    code: str


def text_model_for(key: ApiKey) -> str | None:
    """The first text model the key may call (its allowlist, else its group's), or None."""
    for model in models_in_group(key.group_id).filter(family=Family.TEXT):
        if key.may_call(model.slug):
            return model.slug
    return None


def python_literal(value, indent: int = 0) -> str:
    """``value`` (JSON data) as Python source, indented by 4 per level after the first line."""
    pad, inner = " " * indent, " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{k!r}: {python_literal(v, indent + 4)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [f"{inner}{python_literal(v, indent + 4)}," for v in value]
        return "[\n" + "\n".join(items) + f"\n{pad}]"
    return repr(value)  # str, bool, None, int, float: Python's own literal


def _py_key(secret: str | None) -> tuple[str, str]:
    """The import line the key needs, and the expression that gives it."""
    if secret is None:
        return "import os\n\n", f'os.environ["{ENV_VAR}"]'
    return "", json.dumps(secret)


def _curl_key(secret: str | None) -> str:
    return f"${ENV_VAR}" if secret is None else secret


def quickstart(*, base_url: str, model: str, secret: str | None = None, prefix: str = "qs"):
    """One call in curl and in each SDK. ``secret`` None: the key comes from the environment."""
    imports, key = _py_key(secret)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": HELLO}]})
    curl = (
        f'curl "{base_url}/v1/chat/completions" \\\n'
        f'  -H "Authorization: Bearer {_curl_key(secret)}" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d '{body}'"
    )
    openai = (
        f"{imports}from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{base_url}/v1", api_key={key})\n'
        "reply = client.chat.completions.create(\n"
        f'    model="{model}",\n'
        f'    messages=[{{"role": "user", "content": "{HELLO}"}}],\n'
        ")\n"
        "print(reply.choices[0].message.content)"
    )
    anthropic = (
        f"{imports}import anthropic\n\n"
        f'client = anthropic.Anthropic(base_url="{base_url}", api_key={key})\n'
        "message = client.messages.create(\n"
        f'    model="{model}",\n'
        "    max_tokens=256,\n"
        f'    messages=[{{"role": "user", "content": "{HELLO}"}}],\n'
        ")\n"
        "print(message.content[0].text)"
    )
    gemini = (
        f"{imports}from google import genai\n"
        "from google.genai import types\n\n"
        "client = genai.Client(\n"
        f"    api_key={key},\n"
        f'    http_options=types.HttpOptions(base_url="{base_url}"),\n'
        ")\n"
        f'response = client.models.generate_content(model="{model}", contents="{HELLO}")\n'
        "print(response.text)"
    )
    return [
        Snippet(f"{prefix}-curl", "curl", "shell", curl),
        Snippet(f"{prefix}-openai", "OpenAI Python", "python", openai),
        Snippet(f"{prefix}-anthropic", "Anthropic Python", "python", anthropic),
        Snippet(f"{prefix}-gemini", "Google GenAI Python", "python", gemini),
    ]


def chat_request(*, base_url: str, body: dict, prefix: str = "pg") -> list[Snippet]:
    """The OpenAI Chat request ``body`` as sent to ``{base_url}/v1/chat/completions``, in curl
    and in the OpenAI Python SDK, the key read from ``$BYTESPIKE_API_KEY``."""
    document = json.dumps(body, indent=2, ensure_ascii=False)
    # A quoted here-document passes the JSON as it is, whatever quotes the messages hold; JSON
    # text never has a line that is only the delimiter.
    curl = (
        f'curl -N "{base_url}/v1/chat/completions" \\\n'
        f'  -H "Authorization: Bearer ${ENV_VAR}" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        "  -d @- <<'REQUEST'\n"
        f"{document}\n"
        "REQUEST"
    )
    arguments = "".join(f"    {name}={python_literal(value, 4)},\n" for name, value in body.items())
    streaming = bool(body.get("stream"))
    call = "stream" if streaming else "reply"
    python = (
        "import os\n\n"
        "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{base_url}/v1", api_key=os.environ["{ENV_VAR}"])\n'
        f"{call} = client.chat.completions.create(\n{arguments})\n"
    )
    if streaming:
        python += (
            "for chunk in stream:\n"
            "    if chunk.choices and chunk.choices[0].delta.content:\n"
            '        print(chunk.choices[0].delta.content, end="", flush=True)\n'
            "print()"
        )
    else:
        python += "print(reply.choices[0].message.content)"
    return [
        Snippet(f"{prefix}-curl", "curl", "shell", curl),
        Snippet(f"{prefix}-python", "Python (OpenAI SDK)", "python", python),
    ]
