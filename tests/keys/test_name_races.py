"""Unique key names under concurrency, on PostgreSQL with real threads: requests racing for one
name leave one key with it, and every other gets the same clear refusal (never a database
error), whether they create keys or rename them."""

import pytest

from keys.models import ApiKey
from keys.services import KeyNameTakenError, api_key_update
from tests.factories import AIModelFactory, RoutingGroupFactory, issue_key
from tests.races import race

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def group(db):
    group = RoutingGroupFactory(slug="default", name="Default")
    AIModelFactory(slug="text-small", groups=[group])
    return group


def test_eight_creations_of_one_name_leave_one_key(world, group):
    results = race(lambda i: issue_key(world.account, group, name="Backend"), 8)

    created = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, KeyNameTakenError)]
    assert len(created) == 1 and len(refused) == 7, results
    assert ApiKey.objects.filter(name="Backend").count() == 1


def test_eight_renames_to_one_name_leave_one_key_with_it(world, group):
    keys = [issue_key(world.account, group, name=f"key {i}")[0] for i in range(8)]

    results = race(lambda i: api_key_update(key=keys[i], name="Backend"), 8)

    assert sum(isinstance(r, ApiKey) for r in results) == 1, results
    assert sum(isinstance(r, KeyNameTakenError) for r in results) == 7, results
    assert ApiKey.objects.filter(name="Backend").count() == 1
