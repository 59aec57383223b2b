"""Pausing and resuming a key with PATCH /api/v1/keys/{id} {"status": "paused" | "active"}: the
data plane refuses a paused key at once, a resumed key works again, a revoked key stays revoked."""

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


def url(key_id: str) -> str:
    return f"/api/v1/keys/{key_id}"


def models(client, secret: str):
    """A data-plane call (GET /v1/models) with this inference key."""
    return client.get("/v1/models", headers={"x-api-key": secret})


def test_pause_refuses_the_key_at_once_and_resume_lets_it_work_again(
    client, api, created, django_capture_on_commit_callbacks
):
    assert models(client, created["key"]).status_code == 200  # cached by the data plane now

    with django_capture_on_commit_callbacks(execute=True):
        paused = api.patch(url(created["id"]), {"status": "paused"})

    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    refused = models(client, created["key"])
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "permission_denied"
    assert error["message"] == (
        "This API key is paused. Resume it in the console, or PATCH "
        f'/api/v1/keys/{created["id"]} with {{"status": "active"}}.'
    )

    with django_capture_on_commit_callbacks(execute=True):
        resumed = api.patch(url(created["id"]), {"status": "active"})

    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    assert models(client, created["key"]).status_code == 200


def test_pause_and_resume_are_audited_with_the_management_key_as_actor(
    world, api, created, management_key
):
    api.patch(url(created["id"]), {"status": "paused"})
    api.patch(url(created["id"]), {"status": "active"})

    events = AuditEvent.objects.filter(account=world.account, action__startswith="api_key.")
    actions = list(events.order_by("id").values_list("action", flat=True))
    assert actions == ["api_key.create", "api_key.pause", "api_key.resume"]
    pause = events.get(action="api_key.pause")
    assert pause.actor is None
    assert pause.actor_label == f"management key CI ({management_key[0].masked})"
    assert pause.details == {"key": created["id"]}


def test_pausing_a_paused_key_changes_nothing(world, api, created):
    first = api.patch(url(created["id"]), {"status": "paused"})
    second = api.patch(url(created["id"]), {"status": "paused"})

    assert first.json() == second.json()
    assert AuditEvent.objects.filter(account=world.account, action="api_key.pause").count() == 1
    assert not AuditEvent.objects.filter(action="api_key.update").exists()


def test_the_status_shows_in_get_and_list(api, created):
    api.patch(url(created["id"]), {"status": "paused"})

    assert api.get(url(created["id"])).json()["status"] == "paused"
    assert api.get("/api/v1/keys").json()["items"][0]["status"] == "paused"


def test_status_and_limits_change_together(world, client, api, created):
    body = api.patch(url(created["id"]), {"status": "paused", "rpm": 30, "quota": 2}).json()

    assert (body["status"], body["rpm"], body["quota"]) == ("paused", 30, 2)
    actions = set(AuditEvent.objects.filter(account=world.account).values_list("action", flat=True))
    assert {"api_key.update", "api_key.pause"} <= actions


def test_a_paused_key_keeps_its_status_when_its_limits_change(api, created):
    api.patch(url(created["id"]), {"status": "paused"})

    body = api.patch(url(created["id"]), {"name": "renamed", "tpm": 1000}).json()

    assert (body["status"], body["name"], body["tpm"]) == ("paused", "renamed", 1000)


@pytest.mark.parametrize("status", ["active", "paused"])
def test_a_revoked_key_cannot_be_resumed_or_paused(world, api, group, status):
    key, _ = issue_key(world.account, group)
    api_key_revoke(key=key, actor=world.owner)

    response = api.patch(url(key.public_id), {"status": status})

    error = assert_error(response, 409, "key_revoked", "status")

    assert error["message"].startswith("This key is revoked")
    assert "Create a new key" in error["message"]
    assert ApiKey.objects.get(pk=key.pk).status == KeyStatus.REVOKED


def test_a_revoked_key_with_other_changes_changes_nothing(world, api, group):
    key, _ = issue_key(world.account, group, name="before")
    api_key_revoke(key=key, actor=world.owner)

    assert_error(
        api.patch(url(key.public_id), {"name": "after", "status": "active"}),
        409,
        "key_revoked",
        "status",
    )

    key.refresh_from_db()
    assert (key.name, key.status) == ("before", KeyStatus.REVOKED)


def test_revoked_is_not_a_status_patch_sets(api, created):
    error = assert_error(
        api.patch(url(created["id"]), {"status": "revoked"}), 400, "invalid_param", "status"
    )
    assert f"POST /api/v1/keys/{created['id']}/revoke" in error["message"]
    assert api.get(url(created["id"])).json()["status"] == "active"


def test_a_paused_key_can_be_revoked_rolled_and_deleted(
    client, api, created, django_capture_on_commit_callbacks
):
    api.patch(url(created["id"]), {"status": "paused"})

    rolled = api.post(f"{url(created['id'])}/roll")
    assert rolled.status_code == 200 and rolled.json()["status"] == "paused"
    assert models(client, rolled.json()["key"]).status_code == 403  # still paused

    with django_capture_on_commit_callbacks(execute=True):
        revoked = api.post(f"{url(created['id'])}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert models(client, rolled.json()["key"]).status_code == 401
    assert api.delete(url(created["id"])).status_code == 204


def test_pausing_another_accounts_key_is_not_found(world, api, group):
    theirs, _ = issue_key(world.outsider_account, group)

    assert_error(api.patch(url(theirs.public_id), {"status": "paused"}), 404, "not_found")

    assert ApiKey.objects.get(pk=theirs.pk).status == KeyStatus.ACTIVE
