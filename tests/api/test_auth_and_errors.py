"""Every /api/v1 request needs a live management key in x-api-key, and every failure (bad key,
unknown URL, wrong method, unparsable body, server error) answers in the OpenAI-style envelope."""

import pytest
from django.test import Client

from keys.models import ApiKey
from keys.services import management_key_revoke
from tests.api.conftest import ENDPOINTS, ApiClient, assert_error
from tests.factories import issue_key


@pytest.fixture
def key_path(world, group):
    key, _ = issue_key(world.account, group, actor=world.developer)

    def fill(path: str) -> str:
        return path.replace("{id}", key.public_id)

    return fill


def call(api: ApiClient, method: str, path: str):
    return getattr(api, method)(path)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_refuses_a_request_without_a_key(client, key_path, method, path):
    error = assert_error(
        call(ApiClient(client, None), method, key_path(path)), 401, "invalid_api_key"
    )
    assert error["type"] == "authentication_error"
    assert "x-api-key" in error["message"]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_refuses_an_inference_key(world, group, client, key_path, method, path):
    _, inference_secret = issue_key(world.account, group, name="data plane")
    response = call(ApiClient(client, inference_secret), method, key_path(path))
    error = assert_error(response, 401, "invalid_api_key")
    assert "Inference keys" in error["message"]


@pytest.mark.parametrize(
    "secret",
    [
        "nonsense",
        "sk-byts-admin-short",
        "sk-byts-admin-" + "!" * 40,
        # Well-formed, but no such key.
        "sk-byts-admin-" + "A" * 40,
    ],
)
def test_malformed_or_unknown_keys_get_401(client, key_path, secret):
    assert_error(ApiClient(client, secret).get("/api/v1/keys"), 401, "invalid_api_key")


def test_revoked_management_key_gets_401(world, client, management_key):
    key, secret = management_key
    api = ApiClient(client, secret)
    assert api.get("/api/v1/keys").status_code == 200
    management_key_revoke(key=key, actor=world.owner)
    assert_error(api.get("/api/v1/keys"), 401, "invalid_api_key")


def test_management_key_only_counts_in_x_api_key(client, management_key):
    _, secret = management_key
    response = client.get("/api/v1/keys", headers={"Authorization": f"Bearer {secret}"})
    assert_error(response, 401, "invalid_api_key")


def test_refused_request_changes_nothing(world, group, client):
    response = ApiClient(client, "sk-byts-admin-" + "A" * 40).post(
        "/api/v1/keys", {"name": "sneaky", "group_id": group.pk}
    )
    assert_error(response, 401, "invalid_api_key")
    assert not ApiKey.objects.exists()


def test_management_key_use_is_recorded(management_key, api):
    key, _ = management_key
    assert key.last_used_at is None
    api.get("/api/v1/keys")
    key.refresh_from_db()
    assert key.last_used_at is not None


@pytest.mark.parametrize(
    "path", ["/api/v1/nope", "/api/v1/", "/api/v1/keys/", "/api/v1/keys/x/y/z"]
)
def test_unknown_urls_get_404_in_the_envelope(api, path):
    error = assert_error(api.get(path), 404, "not_found")
    assert path in error["message"]


def test_unknown_url_is_not_redirected_to_a_trailing_slash(client):
    response = client.post("/api/v1/nope", "{}", content_type="application/json")
    assert_error(response, 404, "not_found")


UNKNOWN = ["/api/v1/nope", "/api/v1/", "/api/v1", "/api/v1/keys/", "/api/v1/keys/x/y/z"]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@pytest.mark.parametrize("method", METHODS)
def test_any_method_to_an_unknown_url_gets_404_in_the_envelope_not_the_csrf_page(world, method):
    # A POST used to get Django's HTML "CSRF verification failed" 403 (with or without a session).
    for logged_in in (False, True):
        client = Client(enforce_csrf_checks=True)
        if logged_in:
            client.force_login(world.owner)
        for path in UNKNOWN:
            response = client.generic(method, path, "{}", content_type="application/json")
            assert response.status_code == 404, (method, path, response.content[:200])
            assert response["Content-Type"].startswith("application/json")
            if method != "HEAD":
                assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/api/v1/docs", "/api/v1/openapi.json"])
def test_the_documents_take_only_get_and_answer_other_methods_in_the_envelope(path):
    client = Client(enforce_csrf_checks=True)
    assert client.get(path).status_code == 200
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        response = client.generic(method, path)
        error = assert_error(response, 405, "method_not_allowed")
        assert method in error["message"] and response["Allow"] == "GET, HEAD"


def test_wrong_method_gets_405_in_the_envelope_with_allow(api):
    response = api.client.put("/api/v1/keys", headers={"x-api-key": api.secret})
    error = assert_error(response, 405, "method_not_allowed")
    assert error["type"] == "invalid_request_error"
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}


def test_malformed_json_gets_400_invalid_json(api, group):
    response = api.post("/api/v1/keys", '{"name": "k", "group_id": ')
    error = assert_error(response, 400, "invalid_json")
    assert error["type"] == "invalid_request_error"
    # Nested deeper than the parser goes (RecursionError, found by fuzzing): the same answer.
    assert_error(api.post("/api/v1/keys", "[" * 100_000 + "]" * 100_000), 400, "invalid_json")


@pytest.mark.parametrize("body", ["", "[1, 2]", '"key"', "null", "42"])
def test_body_that_is_not_a_json_object_gets_400(api, group, body):
    error = assert_error(api.post("/api/v1/keys", body), 400, "invalid_param")
    assert error["message"] == "Send a JSON object in the request body."


def test_posts_need_no_csrf_token(world, group, management_key):
    # Scripts send a key, not a session cookie, so Django's CSRF check must not apply.
    api = ApiClient(Client(enforce_csrf_checks=True), management_key[1])
    assert api.post("/api/v1/keys", {"name": "k", "group_id": group.pk}).status_code == 201


def test_unexpected_error_gets_500_in_the_envelope(monkeypatch, management_key, group):
    def broken(account):
        raise RuntimeError("boom")

    monkeypatch.setattr("keys.api.groups_available", broken)
    api = ApiClient(Client(raise_request_exception=False), management_key[1])
    error = assert_error(api.get("/api/v1/groups/available"), 500, "api_error")
    assert error["type"] == "api_error"
    assert "boom" not in error["message"]
