"""The playground's "View code": the chat request just made, as curl and Python that send the
same body to /v1/chat/completions with the key read from $BYTESPIKE_API_KEY (never its
secret); the same rules as the chat for who may see it."""

import html
import json
import re

import pytest
from django.urls import reverse

from generation.playground_views import chat_body
from tests.factories import issue_key
from tests.generation.test_playground import keys  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def code(client, key, **extra):
    body = {
        "key": key.public_id,
        "model": "gemini-2.5-flash",
        "system": "Be brief.",
        "temperature": "0.4",
        "max_tokens": "50",
        "messages": [{"role": "user", "content": "Hi 'there' <b>"}],
    }
    body.update(extra)
    url = reverse("generation:playground-chat-code")
    return client.post(url, json.dumps(body), content_type="application/json"), body


def pre(text: str, snippet_id: str) -> str:
    found = re.search(rf'<pre id="{snippet_id}"[^>]*><code>(.*?)</code></pre>', text, re.S)
    return html.unescape(found.group(1))


def test_view_code_shows_the_exact_request_in_curl_and_python(world, keys, client_for):  # noqa: F811
    response, sent = code(client_for(world.owner), keys.gemini)

    assert response.status_code == 200
    text = response.text
    assert keys.gemini.masked in html.unescape(text) and "$BYTESPIKE_API_KEY" in text
    curl = pre(text, "pg-curl")
    assert curl.startswith('curl -N "http://testserver/v1/chat/completions"')
    document = curl.split("<<'REQUEST'\n")[1].removesuffix("\nREQUEST")
    assert json.loads(document) == chat_body(sent, "gemini-2.5-flash")
    assert json.loads(document)["messages"][0] == {"role": "system", "content": "Be brief."}
    python = pre(text, "pg-python")
    compile(python, "python", "exec")
    assert 'api_key=os.environ["BYTESPIKE_API_KEY"]' in python
    assert "temperature=0.4," in python and "max_tokens=50," in python
    assert "<b>" not in text  # the message is escaped in the page


def test_view_code_refuses_what_the_chat_refuses(world, keys, client_for):  # noqa: F811
    client = client_for(world.owner)

    bad, _ = code(client, keys.gemini, temperature="9")
    empty, _ = code(client, keys.gemini, messages=[])

    assert bad.status_code == 400 and bad.json()["error"]["param"] == "temperature"
    assert empty.status_code == 400


def test_view_code_needs_a_key_the_user_may_use(world, keys, client_for):  # noqa: F811
    theirs, _ = issue_key(world.outsider_account, keys.groups["gemini-default"], name="Theirs")

    assert code(client_for(world.developer), keys.gemini)[0].status_code == 404
    assert code(client_for(world.owner), theirs)[0].status_code == 404
    assert code(client_for(world.viewer), keys.gemini)[0].status_code == 403
    assert code(client_for(world.developer), keys.dev)[0].status_code == 200


def test_the_chat_form_offers_view_code_once_a_request_was_made(world, keys, client_for):  # noqa: F811
    page = client_for(world.owner).get(reverse("generation:playground")).text

    assert 'data-chat-code aria-haspopup="dialog" hidden' in page
    assert f'data-code-url="{reverse("generation:playground-chat-code")}"' in page
    assert 'id="chat-code-dialog"' in page
