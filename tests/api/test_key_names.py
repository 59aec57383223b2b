"""Key names in the management API: a name another key of the account has (not deleted) is
409 key_name_taken on create and on PATCH."""

import pytest

from keys.models import ApiKey
from tests.api.conftest import assert_error
from tests.factories import issue_key

TAKEN = "A key named “Backend” already exists."


@pytest.mark.django_db
def test_the_api_answers_409_key_name_taken_on_create_and_patch(world, api, group):
    issue_key(world.account, group, name="Backend")
    other, _ = issue_key(world.account, group, name="Batch")

    created = api.post("/api/v1/keys", {"name": "Backend", "group_id": group.pk})
    patched = api.patch(f"/api/v1/keys/{other.public_id}", {"name": "Backend"})

    assert assert_error(created, 409, "key_name_taken", "name")["message"] == TAKEN
    assert assert_error(patched, 409, "key_name_taken", "name")["message"] == TAKEN
    assert ApiKey.objects.filter(name="Backend").count() == 1


def test_a_deleted_keys_name_can_be_taken_again(world, api, group):
    first = api.post("/api/v1/keys", {"name": "Backend", "group_id": group.pk}).json()
    assert api.delete(f"/api/v1/keys/{first['id']}").status_code == 204

    again = api.post("/api/v1/keys", {"name": "Backend", "group_id": group.pk})

    assert again.status_code == 201 and again.json()["name"] == "Backend"
