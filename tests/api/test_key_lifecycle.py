"""POST /api/v1/keys/{id}/roll, POST /api/v1/keys/{id}/revoke and DELETE /api/v1/keys/{id}:
each takes effect on the data plane at once and is audited with the management key as actor."""

import pytest

from accounts.models import AuditEvent
from keys.models import ApiKey, KeyStatus
from keys.services import api_key_revoke
from tests.api.conftest import assert_error
from tests.factories import issue_key


@pytest.fixture
def created(api, group) -> dict:
    """A key created through the API: its JSON, plaintext included."""
    return api.post("/api/v1/keys", {"name": "app", "group_id": group.pk}).json()


def models_status(client, secret: str) -> int:
    """Status of a data-plane call (GET /v1/models) with this inference key."""
    return client.get("/v1/models", headers={"x-api-key": secret}).status_code


def audit_label(mkey) -> str:
    return f"management key CI ({mkey.masked})"


# --- Roll ------------------------------------------------------------------------------------


def test_roll_returns_a_new_secret_and_the_old_one_stops_working(
    client, api, created, django_capture_on_commit_callbacks
):
    old = created["key"]
    assert models_status(client, old) == 200  # now cached by the data plane

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/keys/{created['id']}/roll")

    assert response.status_code == 200
    body = response.json()
    new = body["key"]
    assert new != old and new.startswith("sk-byts-")
    assert body["id"] == created["id"]
    assert body["masked_key"] != created["masked_key"]
    assert body["masked_key"].endswith(new[-4:])
    assert models_status(client, old) == 401
    assert models_status(client, new) == 200
    detail = api.get(f"/api/v1/keys/{created['id']}")
    assert "key" not in detail.json() and new not in detail.content.decode()


def test_roll_is_audited_with_the_management_key_as_actor(world, api, created, management_key):
    api.post(f"/api/v1/keys/{created['id']}/roll")

    event = AuditEvent.objects.get(account=world.account, action="api_key.roll")
    assert event.actor is None and event.actor_label == audit_label(management_key[0])
    assert event.details == {"key": created["id"]}


def test_a_revoked_key_cannot_be_rolled(world, api, group):
    key, _ = issue_key(world.account, group)
    api_key_revoke(key=key, actor=world.owner)

    error = assert_error(
        api.post(f"/api/v1/keys/{key.public_id}/roll"), 400, "invalid_param", "status"
    )

    assert "revoked" in error["message"]


def test_roll_of_another_accounts_key_is_not_found(world, api, group):
    theirs, _ = issue_key(world.outsider_account, group)

    assert_error(api.post(f"/api/v1/keys/{theirs.public_id}/roll"), 404, "not_found")

    assert ApiKey.objects.get(pk=theirs.pk).digest == theirs.digest


# --- Revoke ----------------------------------------------------------------------------------


def test_revoke_stops_the_key_and_keeps_it_listed(
    world, client, api, created, management_key, django_capture_on_commit_callbacks
):
    assert models_status(client, created["key"]) == 200

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/keys/{created['id']}/revoke")

    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert "key" not in response.json()
    assert models_status(client, created["key"]) == 401
    assert [key["id"] for key in api.get("/api/v1/keys").json()["items"]] == [created["id"]]
    event = AuditEvent.objects.get(account=world.account, action="api_key.revoke")
    assert event.actor_label == audit_label(management_key[0])


def test_revoke_is_idempotent(world, api, created):
    first = api.post(f"/api/v1/keys/{created['id']}/revoke")
    second = api.post(f"/api/v1/keys/{created['id']}/revoke")

    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert AuditEvent.objects.filter(account=world.account, action="api_key.revoke").count() == 1


def test_revoke_of_another_accounts_key_is_not_found(world, api, group):
    theirs, _ = issue_key(world.outsider_account, group)

    assert_error(api.post(f"/api/v1/keys/{theirs.public_id}/revoke"), 404, "not_found")

    assert ApiKey.objects.get(pk=theirs.pk).status == KeyStatus.ACTIVE


# --- Delete ----------------------------------------------------------------------------------


def test_delete_hides_the_key_and_stops_it(
    world, client, api, created, management_key, django_capture_on_commit_callbacks
):
    assert models_status(client, created["key"]) == 200

    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/v1/keys/{created['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert_error(api.get(f"/api/v1/keys/{created['id']}"), 404, "not_found")
    assert api.get("/api/v1/keys").json()["total"] == 0
    assert models_status(client, created["key"]) == 401
    # The row stays, so past usage keeps its key.
    key = ApiKey.objects.get(public_id=created["id"])
    assert key.deleted_at is not None and key.status == KeyStatus.REVOKED
    event = AuditEvent.objects.get(account=world.account, action="api_key.delete")
    assert event.actor is None and event.actor_label == audit_label(management_key[0])


def test_delete_twice_is_not_found_the_second_time(api, created):
    assert api.delete(f"/api/v1/keys/{created['id']}").status_code == 204
    assert_error(api.delete(f"/api/v1/keys/{created['id']}"), 404, "not_found")


def test_delete_of_another_accounts_key_is_not_found(world, api, group):
    theirs, _ = issue_key(world.outsider_account, group)

    assert_error(api.delete(f"/api/v1/keys/{theirs.public_id}"), 404, "not_found")

    theirs.refresh_from_db()
    assert theirs.deleted_at is None and theirs.status == KeyStatus.ACTIVE
