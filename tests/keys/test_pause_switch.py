"""The keys list's pause switch: those who may manage a key pause and resume it in place (the
row comes back through HTMX); others see only the status badge."""

import pytest
from django.test import Client
from django.urls import reverse

from keys.models import KeyStatus
from keys.services import api_key_revoke
from tests.factories import AIModelFactory, RoutingGroupFactory, issue_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def group(db):
    group = RoutingGroupFactory(slug="default", name="Default")
    AIModelFactory(slug="text-small", groups=[group])
    return group


def row_headers(key) -> dict:
    return {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": f"key-row-{key.public_id}"}


def flip(client, key, status: str):
    """What the switch in the key's row sends."""
    url = reverse("keys:key-update", args=[key.public_id])
    return client.post(url, {"status": status}, **row_headers(key))


def row_of(page: str, key) -> str:
    return page.split(f'id="key-row-{key.public_id}"')[1].split("</tr>")[0]


def test_the_list_shows_a_switch_on_for_an_active_key(world, client_for, group):
    key, _ = issue_key(world.account, group, name="Backend", actor=world.owner)

    page = client_for(world.owner).get(reverse("keys:keys")).text

    row = row_of(page, key)
    assert 'role="switch" aria-checked="true"' in row
    assert 'name="status" value="paused"' in row
    assert f'hx-target="#key-row-{key.public_id}"' in row


def test_switching_off_pauses_the_key_and_swaps_its_row(
    world, client_for, group, django_capture_on_commit_callbacks
):
    key, secret = issue_key(world.account, group, name="Backend", actor=world.owner)
    client = client_for(world.owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = flip(client, key, "paused")

    assert response.status_code == 200
    assert response.text.lstrip().startswith(f'<tr id="key-row-{key.public_id}"')
    assert 'aria-checked="false"' in response.text and 'data-status="paused"' in response.text
    assert 'name="status" value="active"' in response.text
    assert "Paused Backend." in response.headers["HX-Trigger"]
    key.refresh_from_db()
    assert key.status == KeyStatus.PAUSED
    assert Client().get("/v1/models", headers={"x-api-key": secret}).status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        resumed = flip(client, key, "active")

    assert resumed.status_code == 200 and 'aria-checked="true"' in resumed.text
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    assert Client().get("/v1/models", headers={"x-api-key": secret}).status_code == 200


def test_a_developer_switches_only_their_own_keys(world, client_for, group):
    own, _ = issue_key(world.account, group, name="Mine", actor=world.developer)
    theirs, _ = issue_key(world.account, group, name="Theirs", actor=world.admin)
    client = client_for(world.developer)

    page = client.get(reverse("keys:keys")).text

    assert 'role="switch"' in row_of(page, own)
    assert 'role="switch"' not in row_of(page, theirs)
    assert flip(client, theirs, "paused").status_code == 403
    theirs.refresh_from_db()
    assert theirs.status == KeyStatus.ACTIVE


def test_a_viewer_sees_no_switch_and_cannot_pause(world, client_for, group):
    key, _ = issue_key(world.account, group, name="Backend", actor=world.owner)
    client = client_for(world.viewer)

    page = client.get(reverse("keys:keys")).text

    assert 'role="switch"' not in page and 'data-status="active"' in row_of(page, key)
    assert flip(client, key, "paused").status_code == 403
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE


def test_an_outsider_cannot_switch_a_key(world, client_for, group):
    key, _ = issue_key(world.account, group, name="Backend", actor=world.owner)

    assert flip(client_for(world.outsider), key, "paused").status_code == 404
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE


def test_a_revoked_key_has_no_switch_and_a_stale_switch_says_why(world, client_for, group):
    key, _ = issue_key(world.account, group, name="Backend", actor=world.owner)
    client = client_for(world.owner)
    api_key_revoke(key=key, actor=world.owner)

    response = flip(client, key, "active")  # a switch shown before the key was revoked

    assert response.status_code == 422
    assert 'role="switch"' not in response.text and 'data-status="revoked"' in response.text
    assert "cannot be paused or resumed" in response.headers["HX-Trigger"]
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED
    assert 'role="switch"' not in row_of(client.get(reverse("keys:keys")).text, key)
