"""A key limited to some of its group's models: every protocol refuses the others with 403
model_not_allowed in its own envelope and serves the allowed ones; /v1/models and
/v1beta/models list only what the key may call; the playground offers and calls only those."""

import io
import json

import pytest
from django.urls import reverse

from billing.models import Hold, UsageRecord
from generation.models import Task
from tests.factories import funded_catalogue, issue_key
from tests.protocols import png

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
REFUSED = "This key may not call the model '{}'."


@pytest.fixture
def keys(world, settings):
    """A key per demo group, each allowed one text model (and, where the group has them, one
    image model) of its group."""
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    groups = funded_catalogue(world.account, credits=20)
    allowed = {
        "default": ["gpt-4.1", "gpt-image-1"],
        "claude-default": ["claude-haiku-4-5"],
        "gemini-default": ["gemini-2.5-flash", "imagen-4"],
    }
    return {
        slug: issue_key(
            world.account, groups[slug], actor=world.owner, name=slug, allowed_models=models
        )
        for slug, models in allowed.items()
    }


def post(client, path, secret, body):
    return client.post(
        path, json.dumps(body), content_type="application/json", headers={"x-api-key": secret}
    )


def nothing_spent():
    assert not UsageRecord.objects.exists()
    assert not Hold.objects.filter(status="open").exists()


MESSAGES = [{"role": "user", "content": "Hello"}]


def openai_chat(client, secret, model):
    return post(client, "/v1/chat/completions", secret, {"model": model, "messages": MESSAGES})


def openai_responses(client, secret, model):
    return post(client, "/v1/responses", secret, {"model": model, "input": "Hello"})


def anthropic(client, secret, model):
    body = {"model": model, "max_tokens": 50, "messages": MESSAGES}
    return post(client, "/v1/messages", secret, body)


def gemini(client, secret, model):
    body = {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
    return post(client, f"/v1beta/models/{model}:generateContent", secret, body)


def image_generation(client, secret, model):
    body = {"model": model, "prompt": "A paper boat", "size": "1024x1024"}
    return post(client, "/v1/images/generations", secret, body)


def image_edit(client, secret, model):
    source = io.BytesIO(png())
    source.name = "source.png"
    return client.post(
        "/v1/images/edits",
        {"model": model, "prompt": "Make it blue", "image": source},
        headers={"x-api-key": secret},
    )


def task_submit(client, secret, model):
    body = {"model": model, "params": {"prompt": "A fox in the snow", "duration": 4}}
    if model == "imagen-4":
        body["params"] = {"prompt": "A fox in the snow"}
    return post(client, "/v1/tasks/submit", secret, body)


def openai_envelope(response):
    error = response.json()["error"]
    assert error["type"] == "permission_error" and error["code"] == "model_not_allowed"
    assert error["param"] == "model"
    return error["message"]


def anthropic_envelope(response):
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
    return body["error"]["message"]


def google_envelope(response):
    error = response.json()["error"]
    assert error["code"] == 403 and error["status"] == "PERMISSION_DENIED"
    return error["message"]


@pytest.mark.parametrize(
    ("call", "group", "model", "other", "envelope"),
    [
        (openai_chat, "default", "gpt-4.1-mini", "gpt-4.1", openai_envelope),
        (openai_responses, "default", "gpt-4.1-mini", "gpt-4.1", openai_envelope),
        (anthropic, "claude-default", "claude-sonnet-4-5", "claude-haiku-4-5",
         anthropic_envelope),
        (gemini, "gemini-default", "gemini-2.5-pro", "gemini-2.5-flash", google_envelope),
        (image_generation, "gemini-default", "imagen-4", "gemini-2.5-flash", openai_envelope),
        (image_edit, "default", "gpt-image-1", "gpt-4.1", openai_envelope),
        (task_submit, "gemini-default", "veo-3-fast", "imagen-4", openai_envelope),
    ],
)  # fmt: skip
def test_every_protocol_refuses_a_model_the_key_may_not_call(
    client, world, keys, enqueued, call, group, model, other, envelope
):
    """A key allowed only ``other`` is refused ``model``, in the protocol's envelope, before
    anything is held; a key allowed ``model`` (and ``other``) calls it."""
    routing_group = keys[group][0].group
    _, refused = issue_key(world.account, routing_group, name="no", allowed_models=[other])
    response = call(client, refused, model)
    assert response.status_code == 403, response.content
    assert envelope(response) == REFUSED.format(model)
    assert response["X-Request-ID"].startswith("req_")
    nothing_spent()
    assert not Task.objects.exists()

    _, allowed = issue_key(world.account, routing_group, name="yes", allowed_models=[other, model])
    response = call(client, allowed, model)
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [("gpt-99", 400, "model_not_found"), ("claude-sonnet-4-5", 403, "model_not_in_group")],
)
def test_an_unknown_model_or_one_outside_the_group_is_refused_as_before(
    client, keys, model, status, code
):
    response = openai_chat(client, keys["default"][1], model)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_models_lists_only_what_the_key_may_call(client, keys):
    _, secret = keys["default"]
    body = client.get("/v1/models", headers={"authorization": f"Bearer {secret}"}).json()
    assert sorted(entry["id"] for entry in body["data"]) == ["gpt-4.1", "gpt-image-1"]
    anthropic_list = client.get(
        "/v1/models", headers={"x-api-key": keys["claude-default"][1], "anthropic-version": "1"}
    ).json()
    assert [entry["id"] for entry in anthropic_list["data"]] == ["claude-haiku-4-5"]
    assert anthropic_list["first_id"] == anthropic_list["last_id"] == "claude-haiku-4-5"
    google = client.get("/v1beta/models", headers={"x-goog-api-key": keys["gemini-default"][1]})
    names = sorted(model["name"] for model in google.json()["models"])
    assert names == ["models/gemini-2.5-flash", "models/imagen-4"]


def test_a_key_without_an_allowlist_lists_its_whole_group(client, world, keys):
    key, _ = keys["default"]
    _, secret = issue_key(world.account, key.group, name="all")
    ids = {e["id"] for e in client.get("/v1/models", headers={"x-api-key": secret}).json()["data"]}
    assert {"gpt-4.1", "gpt-4.1-mini", "gpt-image-1", "sora-2"} <= ids


# --- The playground ---------------------------------------------------------------------------


def test_the_playground_offers_only_the_allowed_models(world, keys, client_for):
    key, _ = keys["gemini-default"]
    response = client_for(world.owner).get(
        reverse("generation:playground") + f"?key={key.public_id}",
        headers={**HTMX, "HX-Target": "playground-models"},
    )
    assert response.status_code == 200
    assert 'value="gemini-2.5-flash"' in response.text and 'value="imagen-4"' in response.text
    assert 'value="gemini-2.5-pro"' not in response.text
    assert 'value="veo-3-fast"' not in response.text


def test_the_playground_refuses_a_model_the_key_may_not_call(world, keys, client_for, enqueued):
    key, _ = keys["gemini-default"]
    client = client_for(world.owner)
    chat = client.post(
        reverse("generation:playground-chat"),
        json.dumps({"key": key.public_id, "model": "gemini-2.5-pro", "messages": MESSAGES}),
        content_type="application/json",
    )
    assert chat.status_code == 403
    assert chat.json()["error"]["code"] == "model_not_allowed"

    task = client.post(
        reverse("generation:playground-task"),
        {"key": key.public_id, "model": "veo-3-fast", "prompt": "A fox", "duration": "4"},
        headers=HTMX,
    )
    assert task.status_code == 422
    assert REFUSED.format("veo-3-fast").replace("'", "&#x27;") in task.text

    narrower, _ = issue_key(
        world.account, key.group, actor=world.owner, allowed_models=["gemini-2.5-flash"]
    )
    images = client.post(
        reverse("generation:playground-images"),
        {"key": narrower.public_id, "model": "imagen-4", "prompt": "A fox", "n": "1",
         "size": "1024x1024", "action": "generate"},
        headers=HTMX,
    )  # fmt: skip
    assert images.status_code == 422
    assert REFUSED.format("imagen-4").replace("'", "&#x27;") in images.text

    estimate = client.get(
        reverse("generation:playground-estimate"),
        {"key": key.public_id, "model": "veo-3-fast", "duration": "4"},
        headers=HTMX,
    )
    assert estimate.status_code == 422
    nothing_spent()
    assert not Task.objects.exists()
