"""Pause and Resume on a key's page: the same permission as editing the key, audited, the data
plane refuses a paused key at once; a revoked key cannot be resumed."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent
from keys.models import KeyStatus
from keys.services import api_key_revoke, api_key_update
from tests.factories import AIModelFactory, RoutingGroupFactory, issue_key

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "key-detail"}


@pytest.fixture
def group(db):
    group = RoutingGroupFactory(slug="default", name="Default")
    AIModelFactory(slug="text-small", groups=[group])
    return group


def url(name: str, key) -> str:
    return reverse(f"keys:{name}", args=[key.public_id])


def set_status(client, key, status: str, headers=HTMX):
    """What the Pause and Resume buttons send."""
    return client.post(url("key-update", key), {"status": status}, **headers)


def models_status(secret: str) -> int:
    return Client().get("/v1/models", headers={"x-api-key": secret}).status_code


def test_owner_pauses_and_resumes_a_key(
    world, client_for, group, django_capture_on_commit_callbacks
):
    key, secret = issue_key(world.account, group, name="Backend", actor=world.developer)
    client = client_for(world.owner)
    assert models_status(secret) == 200

    with django_capture_on_commit_callbacks(execute=True):
        paused = set_status(client, key, "paused")

    assert paused.status_code == 200
    assert paused.text.lstrip().startswith('<div id="key-detail"')
    assert "Key paused." in paused.text and 'data-status="paused"' in paused.text
    assert 'id="key-paused"' in paused.text
    assert 'name="status" value="active"' in paused.text  # the Resume button
    assert 'name="status" value="paused"' not in paused.text
    assert "announce" in paused.headers["HX-Trigger"]
    key.refresh_from_db()
    assert key.status == KeyStatus.PAUSED
    assert models_status(secret) == 403

    with django_capture_on_commit_callbacks(execute=True):
        resumed = set_status(client, key, "active")

    assert resumed.status_code == 200 and "Key resumed." in resumed.text
    assert 'data-status="active"' in resumed.text and 'id="key-paused"' not in resumed.text
    assert 'name="status" value="paused"' in resumed.text
    assert models_status(secret) == 200
    actions = AuditEvent.objects.filter(actor=world.owner).values_list("action", flat=True)
    assert list(actions.order_by("id")) == ["api_key.pause", "api_key.resume"]


def test_pause_and_resume_show_in_the_audit_log(world, client_for, group):
    key, _ = issue_key(world.account, group, name="Audited", actor=world.owner)
    client = client_for(world.owner)
    set_status(client, key, "paused")
    set_status(client, key, "active")

    text = client.get(reverse("accounts:audit")).text

    assert "Paused an API key" in text and "Resumed an API key" in text
    assert "Audited (" in text


def test_pause_without_javascript_redirects_to_the_key(world, client_for, group):
    key, _ = issue_key(world.account, group, actor=world.owner)
    client = client_for(world.owner)

    response = set_status(client, key, "paused", headers={})

    assert response.status_code == 302 and response.url == url("key-detail", key)
    page = client.get(response.url).text
    assert "Paused test." in page and 'data-status="paused"' in page


def test_a_paused_keys_page_still_edits_rolls_and_revokes(world, client_for, group):
    key, _ = issue_key(world.account, group, actor=world.owner)
    api_key_update(key=key, actor=world.owner, status=KeyStatus.PAUSED)

    text = client_for(world.owner).get(url("key-detail", key)).text

    assert "This key is paused" in text
    assert 'id="key-limits"' in text
    for name in ("key-roll", "key-revoke", "key-delete"):
        assert url(name, key) in text, name


def test_the_list_shows_a_paused_key_and_still_offers_revoke(world, client_for, group):
    key, _ = issue_key(world.account, group, actor=world.owner)
    api_key_update(key=key, actor=world.owner, status=KeyStatus.PAUSED)

    text = client_for(world.owner).get(reverse("keys:keys")).text

    row = text.split(f'id="key-row-{key.public_id}"')[1].split("</tr>")[0]
    assert 'class="is-inactive"' in text and 'data-status="paused"' in row
    assert url("key-revoke", key) in row


def test_editing_a_paused_key_keeps_it_paused(world, client_for, group):
    key, _ = issue_key(world.account, group, actor=world.owner)
    api_key_update(key=key, actor=world.owner, status=KeyStatus.PAUSED)

    response = client_for(world.owner).post(
        url("key-update", key), {"name": "Renamed"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200 and "Saved." in response.text
    key.refresh_from_db()
    assert (key.name, key.status) == ("Renamed", KeyStatus.PAUSED)


def test_a_revoked_key_cannot_be_resumed(world, client_for, group):
    key, secret = issue_key(world.account, group, actor=world.owner)
    api_key_revoke(key=key, actor=world.owner)

    response = set_status(client_for(world.owner), key, "active")

    assert response.status_code == 422
    assert "a revoked key cannot be paused or resumed" in response.text
    assert 'name="status"' not in response.text
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED
    assert models_status(secret) == 401


def test_only_active_or_paused_can_be_chosen(world, client_for, group):
    key, _ = issue_key(world.account, group, actor=world.owner)

    response = set_status(client_for(world.owner), key, "revoked")

    assert response.status_code == 422 and "Revoking is final" in response.text
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE


def test_developer_pauses_their_own_key_but_not_a_teammates(world, client_for, group):
    own, _ = issue_key(world.account, group, name="Mine", actor=world.developer)
    theirs, _ = issue_key(world.account, group, name="Theirs", actor=world.admin)
    client = client_for(world.developer)

    assert set_status(client, theirs, "paused").status_code == 403
    assert 'name="status"' not in client.get(url("key-detail", theirs)).text
    assert set_status(client, own, "paused").status_code == 200

    own.refresh_from_db()
    theirs.refresh_from_db()
    assert (own.status, theirs.status) == (KeyStatus.PAUSED, KeyStatus.ACTIVE)


def test_viewer_cannot_pause(world, client_for, group):
    key, _ = issue_key(world.account, group, actor=world.viewer)

    assert set_status(client_for(world.viewer), key, "paused").status_code == 403

    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE


def test_outsider_gets_404(world, client_for, group):
    key, _ = issue_key(world.account, group, actor=world.owner)
    api_key_update(key=key, actor=world.owner, status=KeyStatus.PAUSED)

    assert set_status(client_for(world.outsider), key, "active").status_code == 404

    key.refresh_from_db()
    assert key.status == KeyStatus.PAUSED
