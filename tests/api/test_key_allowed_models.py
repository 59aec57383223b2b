"""A key's `allowed_models` in the management API: created, read, changed and cleared; bad lists
refused in the API's error shape, changing nothing; the OpenAPI document describes it."""

import pytest

from keys.models import ApiKey
from keys.services import MAX_ALLOWED_MODELS
from tests.api.conftest import assert_error
from tests.factories import AIModelFactory, RoutingGroupFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/keys"


@pytest.fixture
def models(group):
    """ "default" (the `group` fixture: text-small) gains text-large; "other" has its own."""
    AIModelFactory(slug="text-large", groups=[group])
    AIModelFactory(slug="other-model", groups=[RoutingGroupFactory(slug="other")])
    return group


def test_create_read_update_and_clear(api, models):
    created = api.post(
        URL,
        {"name": "k", "group_id": models.pk, "allowed_models": ["text-large", "text-small"]},
    )
    assert created.status_code == 201, created.content
    assert created.json()["allowed_models"] == ["text-large", "text-small"]
    key_id = created.json()["id"]
    assert api.get(f"{URL}/{key_id}").json()["allowed_models"] == ["text-large", "text-small"]
    listed = api.get(URL).json()["items"]
    assert listed[0]["allowed_models"] == ["text-large", "text-small"]

    changed = api.patch(f"{URL}/{key_id}", {"allowed_models": ["text-small", "text-small"]})
    assert changed.status_code == 200 and changed.json()["allowed_models"] == ["text-small"]
    renamed = api.patch(f"{URL}/{key_id}", {"name": "renamed"})  # absent: unchanged
    assert renamed.json()["allowed_models"] == ["text-small"]
    cleared = api.patch(f"{URL}/{key_id}", {"allowed_models": []})  # empty: every model
    assert cleared.json()["allowed_models"] == []
    assert ApiKey.objects.get().allowed_models == []


def test_a_key_made_without_one_may_call_every_model(api, models):
    body = api.post(URL, {"name": "k", "group_id": models.pk}).json()
    assert body["allowed_models"] == []


@pytest.mark.parametrize(
    ("allowed", "param"),
    [
        (["gpt-99"], "allowed_models"),
        (["other-model"], "allowed_models"),  # a model of another group
        ("text-small", "allowed_models"),
        ([7], "allowed_models.0"),
        (["text-small", None], "allowed_models.1"),
        (["text-small"] * (MAX_ALLOWED_MODELS + 1), "allowed_models"),
    ],
)
def test_bad_lists_are_refused_on_create(api, models, allowed, param):
    response = api.post(URL, {"name": "k", "group_id": models.pk, "allowed_models": allowed})
    assert_error(response, 400, "invalid_param", param)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    ("allowed", "param"),
    [
        (["gpt-99"], "allowed_models"),
        (["other-model"], "allowed_models"),
        ({"a": 1}, "allowed_models"),
        ([["text-small"]], "allowed_models.0"),
        ([""], "allowed_models"),
    ],
)
def test_bad_lists_are_refused_on_update_and_change_nothing(api, models, allowed, param):
    key_id = api.post(
        URL, {"name": "k", "group_id": models.pk, "allowed_models": ["text-small"]}
    ).json()["id"]
    response = api.patch(f"{URL}/{key_id}", {"allowed_models": allowed})
    assert_error(response, 400, "invalid_param", param)
    assert ApiKey.objects.get().allowed_models == ["text-small"]


def test_the_openapi_document_describes_allowed_models(client):
    schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    for name in ("KeyCreateIn", "KeyUpdateIn", "KeyOut"):
        field = schemas[name]["properties"]["allowed_models"]
        assert "model_not_allowed" in field["description"], name
    create = schemas["KeyCreateIn"]["properties"]["allowed_models"]
    assert create["type"] == "array" and create["items"] == {"type": "string"}
    assert create["maxItems"] == MAX_ALLOWED_MODELS
    assert "allowed_models" in schemas["KeyOut"]["required"]
