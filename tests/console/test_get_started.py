"""The dashboard's "Get started" panel while the account has no usage, and the code in the
key-created dialog: the base URL callers use, a key (the newest, masked, or a link to create
one), runnable snippets for curl and the OpenAI, Anthropic and Google GenAI SDKs, and the API
docs."""

import html
import json
import re
import shlex

import pytest
from django.test import override_settings
from django.urls import reverse

from keys.models import ApiKey
from keys.snippets import chat_request, quickstart
from tests.billing.test_pages import bill
from tests.factories import AIModelFactory, RoutingGroupFactory, fund, issue_key

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def group(db):
    group = RoutingGroupFactory(slug="default", name="Default")
    AIModelFactory(slug="gpt-4.1", display_name="GPT-4.1", groups=[group])
    return group


def panel(client) -> str | None:
    page = client.get(reverse("console:dashboard")).text
    if 'id="get-started"' not in page:
        return None
    return html.unescape(page.split('id="get-started"')[1].split("</section>")[0])


def snippet(text: str, snippet_id: str) -> str:
    return re.search(rf'<pre id="{snippet_id}"[^>]*><code>(.*?)</code></pre>', text, re.S).group(1)


def test_a_new_account_gets_the_base_url_snippets_and_docs_and_a_link_to_create_a_key(
    world, client_for, group
):
    text = panel(client_for(world.owner))

    assert text is not None
    assert '<code id="start-base-url">http://testserver</code>' in text
    assert 'href="/api/v1/docs"' in text
    assert f'href="{reverse("keys:keys")}">Create a key' in text
    curl = snippet(text, "start-curl")
    assert curl.startswith('curl "http://testserver/v1/chat/completions"')
    assert 'Authorization: Bearer $BYTESPIKE_API_KEY"' in curl and '"model": "gpt-4.1"' in curl
    assert 'OpenAI(base_url="http://testserver/v1", api_key=os.environ["BYTESPIKE_API_KEY"])' in (
        snippet(text, "start-openai")
    )
    assert 'anthropic.Anthropic(base_url="http://testserver"' in snippet(text, "start-anthropic")
    assert 'types.HttpOptions(base_url="http://testserver")' in snippet(text, "start-gemini")


def test_with_a_key_the_panel_names_the_newest_one_masked_and_its_groups_model(
    world, client_for, group
):
    issue_key(world.account, group, name="Older")
    other = RoutingGroupFactory(slug="claude", name="Claude")
    AIModelFactory(slug="claude-haiku-4-5", groups=[other])
    newest, secret = issue_key(world.account, other, name="Newest")

    text = panel(client_for(world.owner))

    assert f'{newest.name}</a> <code class="key-mask">{newest.masked}</code>' in text
    assert secret not in text and "Create a key" not in text
    assert '"model": "claude-haiku-4-5"' in snippet(text, "start-curl")


@override_settings(BYTESPIKE_PUBLIC_URL="https://api.example.test")
def test_the_configured_public_url_is_the_base_url(world, client_for, group):
    text = panel(client_for(world.owner))

    assert '<code id="start-base-url">https://api.example.test</code>' in text
    assert '"https://api.example.test/v1"' in snippet(text, "start-openai")


def test_the_panel_goes_away_once_the_account_has_usage(world, client_for, group):
    key, _ = issue_key(world.account, group, name="Backend")
    client = client_for(world.owner)
    assert panel(client) is not None
    fund(world.account, 5)
    bill(key, group.models.get(), 10_000)

    assert panel(client) is None


def test_the_snippets_are_valid_python_and_shell():
    for item in quickstart(base_url="http://h:1", model="m-1", secret="sk-byts-abc"):
        if item.language == "python":
            compile(item.code, item.id, "exec")
        else:
            words = shlex.split(item.code.replace("\\\n", " "))
            assert words[0] == "curl" and json.loads(words[-1])["model"] == "m-1"
            assert "Authorization: Bearer sk-byts-abc" in words


# --- The key-created dialog ------------------------------------------------------------------


def test_the_created_dialog_shows_snippets_with_the_new_secret_once(world, client_for, group):
    client = client_for(world.owner)

    response = client.post(
        reverse("keys:key-create"), {"name": "Backend", "group": group.pk}, **HTMX
    )

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    text = html.unescape(response.text)
    secret = re.search(r'id="new-key-secret" class="secret-input" value="([^"]+)"', text).group(1)
    assert ApiKey.objects.get().masked.endswith(secret[-4:])
    assert f"Bearer {secret}" in snippet(text, "new-key-curl")
    assert f'api_key="{secret}"' in snippet(text, "new-key-openai")
    assert f'api_key="{secret}"' in snippet(text, "new-key-anthropic")
    assert f'api_key="{secret}",' in snippet(text, "new-key-gemini")
    assert '<code id="new-key-base-url">http://testserver</code>' in text
    # Never again: not on the list, the key's page or the dashboard.
    key = ApiKey.objects.get()
    for url in (
        reverse("keys:keys"),
        reverse("keys:key-detail", args=[key.public_id]),
        reverse("console:dashboard"),
    ):
        assert secret not in client.get(url).text


def test_a_key_of_a_group_without_text_models_gets_no_chat_snippet(world, client_for):
    images = RoutingGroupFactory(slug="images", name="Images")
    AIModelFactory(slug="img-1", family="image", groups=[images])

    response = client_for(world.owner).post(
        reverse("keys:key-create"), {"name": "Pictures", "group": images.pk}, **HTMX
    )

    assert response.status_code == 200
    assert "new-key-curl" not in response.text and "no text model" in response.text


# --- The playground's "view code" builder ----------------------------------------------------


def test_a_chat_request_as_curl_sends_the_exact_body_and_as_python_compiles():
    body = {
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "Be brief, it's 'quoted'."},
            {"role": "user", "content": 'Hi\nREQUEST\nthere "you" $HOME'},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.5,
        "max_tokens": 40,
    }

    curl, python = chat_request(base_url="http://h:1", body=body)

    head, document = curl.code.split("<<'REQUEST'\n")
    assert document.endswith("\nREQUEST")
    assert json.loads(document.removesuffix("\nREQUEST")) == body
    assert "Bearer $BYTESPIKE_API_KEY" in head and '"http://h:1/v1/chat/completions"' in head
    compile(python.code, "python", "exec")
    assert 'os.environ["BYTESPIKE_API_KEY"]' in python.code
    assert "stream_options={\n        'include_usage': True,\n    }," in python.code
