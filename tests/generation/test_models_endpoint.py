"""GET /v1/models and /v1beta/models: the key's group only, in each protocol's shape."""

from decimal import Decimal

import pytest

from tests.factories import AIModelFactory, RoutingGroupFactory, issue_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(world):
    claude = RoutingGroupFactory(slug="claude-default", rate_multiplier=Decimal("1.5"))
    openai = RoutingGroupFactory(slug="default")
    AIModelFactory(slug="claude-sonnet-4-5", groups=[claude], input_price=3_000_000)
    AIModelFactory(slug="gemini-2.5-flash", groups=[claude, openai])
    AIModelFactory(slug="gpt-4.1", groups=[openai])
    AIModelFactory(slug="retired", groups=[claude], is_active=False)
    AIModelFactory(
        slug="veo-3-fast", family="video", groups=[claude], video_price_per_second=150_000
    )
    return claude, openai


def test_openai_shape_lists_only_the_keys_group(client, world, catalogue):
    claude, _ = catalogue
    _, secret = issue_key(world.account, claude)
    body = client.get("/v1/models", headers={"authorization": f"Bearer {secret}"}).json()
    assert body["object"] == "list"
    ids = [entry["id"] for entry in body["data"]]
    assert sorted(ids) == ["claude-sonnet-4-5", "gemini-2.5-flash", "veo-3-fast"]
    sonnet = next(e for e in body["data"] if e["id"] == "claude-sonnet-4-5")
    assert sonnet["object"] == "model" and sonnet["family"] == "text"
    assert sonnet["context_window"] == 128_000 and sonnet["max_output_tokens"] == 16_000
    assert sonnet["pricing"]["input"] == 4.5  # 3 credits x 1.5 multiplier
    video = next(e for e in body["data"] if e["id"] == "veo-3-fast")
    assert video["pricing"] == {"unit": "second", "per_second": 0.225, "submit_fee": 0}


def test_another_group_sees_its_own_models(client, world, catalogue):
    _, openai = catalogue
    _, secret = issue_key(world.account, openai)
    ids = [e["id"] for e in client.get("/v1/models", headers={"x-api-key": secret}).json()["data"]]
    assert sorted(ids) == ["gemini-2.5-flash", "gpt-4.1"]


def test_anthropic_shape_when_anthropic_version_is_sent(client, world, catalogue):
    _, secret = issue_key(world.account, catalogue[0])
    body = client.get(
        "/v1/models", headers={"x-api-key": secret, "anthropic-version": "2023-06-01"}
    ).json()
    assert body["has_more"] is False
    assert {entry["type"] for entry in body["data"]} == {"model"}
    assert body["first_id"] == body["data"][0]["id"]
    assert set(body["data"][0]) == {"type", "id", "display_name", "created_at"}


def test_gemini_shape_under_v1beta(client, world, catalogue):
    _, secret = issue_key(world.account, catalogue[0])
    body = client.get("/v1beta/models", headers={"x-goog-api-key": secret}).json()
    names = {model["name"] for model in body["models"]}
    assert names == {"models/claude-sonnet-4-5", "models/gemini-2.5-flash", "models/veo-3-fast"}
    flash = next(m for m in body["models"] if m["name"] == "models/gemini-2.5-flash")
    assert "generateContent" in flash["supportedGenerationMethods"]


def test_models_is_get_only(client, world, catalogue):
    _, secret = issue_key(world.account, catalogue[0])
    assert client.post("/v1/models", headers={"x-api-key": secret}).status_code == 405
