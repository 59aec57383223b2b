"""Fixtures for the management API: management keys, a group to put keys in, and a client that
sends the key in ``x-api-key``."""

import json
from dataclasses import dataclass

import pytest

from accounts.models import GroupGrant
from catalogue.models import RoutingGroup
from keys.services import management_key_issue
from tests.factories import AIModelFactory, RoutingGroupFactory


def grant(group: RoutingGroup, account) -> GroupGrant:
    return GroupGrant.objects.create(group=group, account=account)


@dataclass
class ApiClient:
    """The Django test client with a key in ``x-api-key`` and JSON bodies."""

    client: object
    secret: str | None

    def _headers(self, headers):
        return {**({"x-api-key": self.secret} if self.secret else {}), **(headers or {})}

    def get(self, path, data=None, headers=None):
        return self.client.get(path, data, headers=self._headers(headers))

    def delete(self, path, headers=None):
        return self.client.delete(path, headers=self._headers(headers))

    def _send(self, method, path, body, headers):
        raw = body if isinstance(body, str | bytes) else json.dumps(body)
        send = getattr(self.client, method)
        return send(path, raw, content_type="application/json", headers=self._headers(headers))

    def post(self, path, body=None, headers=None):
        return self._send("post", path, {} if body is None else body, headers)

    def patch(self, path, body=None, headers=None):
        return self._send("patch", path, {} if body is None else body, headers)

    def put(self, path, body=None, headers=None):
        return self._send("put", path, {} if body is None else body, headers)


@pytest.fixture
def management_key(world):
    """A management key of Acme, created by its admin: (key, plaintext)."""
    return management_key_issue(account=world.account, actor=world.admin, name="CI")


@pytest.fixture
def api(client, management_key) -> ApiClient:
    return ApiClient(client, management_key[1])


@pytest.fixture
def outsider_api(world, client) -> ApiClient:
    _, secret = management_key_issue(
        account=world.outsider_account, actor=world.outsider, name="Other CI"
    )
    return ApiClient(client, secret)


@pytest.fixture
def group(db) -> RoutingGroup:
    """A public group with one text model."""
    group = RoutingGroupFactory(slug="default")
    AIModelFactory(slug="text-small", groups=[group])
    return group


def assert_error(response, status: int, code: str, param: str | None = None) -> dict:
    """The response is the OpenAI-style error envelope with this status, code and param."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code, error
    assert error["param"] == param, error
    assert error["message"]
    return error


# Every management endpoint, with a key id where the path takes one.
ENDPOINTS = [
    ("get", "/api/v1/groups/available"),
    ("get", "/api/v1/keys"),
    ("post", "/api/v1/keys"),
    ("get", "/api/v1/keys/{id}"),
    ("patch", "/api/v1/keys/{id}"),
    ("delete", "/api/v1/keys/{id}"),
    ("post", "/api/v1/keys/{id}/roll"),
    ("post", "/api/v1/keys/{id}/revoke"),
]
