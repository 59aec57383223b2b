"""GET /api/v1/keys and GET /api/v1/keys/{id}: the account's keys (never another account's,
never a deleted one), paged, without their secrets."""

from datetime import timedelta

import pytest
from django.utils import timezone

from keys.models import ApiKey
from keys.services import api_key_delete, api_key_revoke
from tests.api.conftest import assert_error
from tests.factories import issue_key


def test_lists_the_accounts_keys_newest_first(world, api, group):
    first, _ = issue_key(world.account, group, actor=world.developer, name="first")
    issue_key(world.account, group, actor=world.owner, name="second")
    ApiKey.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=1))
    issue_key(world.outsider_account, group, actor=world.outsider, name="theirs")
    deleted, _ = issue_key(world.account, group, name="deleted")
    api_key_delete(key=deleted, actor=world.owner)

    response = api.get("/api/v1/keys")

    assert response.status_code == 200
    body = response.json()
    assert [key["name"] for key in body["items"]] == ["second", "first"]
    assert (body["total"], body["page"], body["page_size"]) == (2, 1, 50)


def test_pages_through_keys(world, api, group):
    for n in range(5):
        key, _ = issue_key(world.account, group, name=f"k{n}")
        ApiKey.objects.filter(pk=key.pk).update(created_at=timezone.now() - timedelta(minutes=n))

    pages = [api.get("/api/v1/keys", {"page": p, "page_size": 2}).json() for p in (1, 2, 3, 4)]

    assert [[key["name"] for key in page["items"]] for page in pages] == [
        ["k0", "k1"],
        ["k2", "k3"],
        ["k4"],
        [],
    ]
    assert {page["total"] for page in pages} == {5}
    assert [page["page"] for page in pages] == [1, 2, 3, 4]
    assert {page["page_size"] for page in pages} == {2}


def test_page_size_of_200_is_the_maximum(api):
    assert api.get("/api/v1/keys", {"page_size": 200}).json()["page_size"] == 200


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"page_size": 201}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"page": 10**12}, "page"),
    ],
)
def test_paging_out_of_range_is_refused(api, query, param):
    assert_error(api.get("/api/v1/keys", query), 400, "invalid_param", param)


def test_lists_and_gets_never_show_a_secret(world, api, group):
    created = api.post("/api/v1/keys", {"name": "k", "group_id": group.pk}).json()
    secret = created["key"]
    rolled = api.post(f"/api/v1/keys/{created['id']}/roll").json()["key"]

    listed = api.get("/api/v1/keys")
    detail = api.get(f"/api/v1/keys/{created['id']}")

    for response in (listed, detail):
        assert secret not in response.content.decode()
        assert rolled not in response.content.decode()
    assert "key" not in listed.json()["items"][0]
    assert "key" not in detail.json()


def test_gets_a_key_made_in_the_console(world, api, group):
    key, _ = issue_key(
        world.account, group, actor=world.developer, name="from console", quota=2_500_000
    )

    response = api.get(f"/api/v1/keys/{key.public_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == key.public_id
    assert body["name"] == "from console"
    assert body["created_by"] == "developer@acme.test"
    assert body["created_via"] == "console"
    assert body["quota"] == 2.5
    assert body["masked_key"] == key.masked
    assert body["status"] == "active"


def test_status_shows_revoked_and_expired_keys(world, api, group):
    revoked, _ = issue_key(world.account, group, name="revoked")
    api_key_revoke(key=revoked, actor=world.owner)
    expired, _ = issue_key(world.account, group, name="expired")
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))

    assert api.get(f"/api/v1/keys/{revoked.public_id}").json()["status"] == "revoked"
    assert api.get(f"/api/v1/keys/{expired.public_id}").json()["status"] == "expired"


def test_another_accounts_key_is_not_found(world, api, outsider_api, group):
    theirs, _ = issue_key(world.outsider_account, group, actor=world.outsider)

    error = assert_error(api.get(f"/api/v1/keys/{theirs.public_id}"), 404, "not_found")

    assert error["type"] == "not_found_error"
    # The same id works for its own account: the 404 reveals nothing.
    assert outsider_api.get(f"/api/v1/keys/{theirs.public_id}").status_code == 200


@pytest.mark.parametrize("key_id", ["key_01JD0000000000000000000000", "nope", "1"])
def test_unknown_key_is_not_found(api, key_id):
    assert_error(api.get(f"/api/v1/keys/{key_id}"), 404, "not_found")
