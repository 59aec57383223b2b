"""Key names are unique in an account among keys not deleted, so usage rows and lists tell keys
apart: the console forms and the API refuse a taken name with "A key named X already exists.",
the database constraint backs it, and migration 0003 renamed the duplicates that existed."""

import importlib

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from keys.models import ApiKey
from keys.services import KeyNameTakenError, api_key_delete, api_key_revoke, api_key_update
from tests.factories import AIModelFactory, RoutingGroupFactory, issue_key

HTMX = {"HTTP_HX_REQUEST": "true"}
TAKEN = "A key named “Backend” already exists."


@pytest.fixture
def group(db):
    group = RoutingGroupFactory(slug="default", name="Default")
    AIModelFactory(slug="text-small", groups=[group])
    return group


# --- Services and the constraint ------------------------------------------------------------


@pytest.mark.django_db
def test_issuing_a_second_key_with_a_taken_name_is_refused(world, group):
    issue_key(world.account, group, name="Backend")

    with pytest.raises(KeyNameTakenError) as caught:
        issue_key(world.account, group, name="  Backend ")

    assert str(caught.value) == TAKEN and caught.value.field == "name"
    assert ApiKey.objects.filter(name="Backend").count() == 1


@pytest.mark.django_db
def test_the_same_name_is_fine_in_another_account_and_after_a_delete(world, group):
    first, _ = issue_key(world.account, group, name="Backend")
    issue_key(world.outsider_account, group, name="Backend")
    api_key_delete(key=first)

    again, _ = issue_key(world.account, group, name="Backend")

    assert again.pk != first.pk
    assert ApiKey.objects.filter(account=world.account, name="Backend").count() == 2


@pytest.mark.django_db
def test_a_revoked_key_keeps_its_name(world, group):
    key, _ = issue_key(world.account, group, name="Backend")
    api_key_revoke(key=key)

    with pytest.raises(KeyNameTakenError):
        issue_key(world.account, group, name="Backend")


@pytest.mark.django_db
def test_renaming_to_a_taken_name_is_refused_and_to_its_own_name_is_no_change(world, group):
    issue_key(world.account, group, name="Backend")
    other, _ = issue_key(world.account, group, name="Batch")

    with pytest.raises(KeyNameTakenError):
        api_key_update(key=other, name="Backend")
    api_key_update(key=other, name="Batch")

    other.refresh_from_db()
    assert other.name == "Batch"


@pytest.mark.django_db
def test_the_database_refuses_duplicates_among_keys_not_deleted(world, group):
    key, _ = issue_key(world.account, group, name="Backend")
    twin = ApiKey(
        account=world.account, group=group, project=key.project, name="Backend", digest="x" * 64
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        twin.save()

    ApiKey.objects.filter(pk=key.pk).update(deleted_at=key.created_at)
    twin.save()  # the deleted key's name is free


# --- Console ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_create_form_shows_the_taken_name_next_to_the_name_field(world, client_for, group):
    issue_key(world.account, group, name="Backend")
    url = reverse("keys:key-create")

    response = client_for(world.owner).post(url, {"name": "Backend", "group": group.pk}, **HTMX)

    assert response.status_code == 422
    name_field = response.text.split('for="id_name"')[1].split('name="group"')[0]
    assert TAKEN in name_field
    assert ApiKey.objects.filter(name="Backend").count() == 1


@pytest.mark.django_db
def test_the_edit_form_refuses_a_taken_name(world, client_for, group):
    issue_key(world.account, group, name="Backend")
    other, _ = issue_key(world.account, group, name="Batch", actor=world.owner)
    form = {"name": "Backend", "expires_on": "", "ip_allowlist": "", "ip_denylist": ""}

    response = client_for(world.owner).post(
        reverse("keys:key-update", args=[other.public_id]), form, **HTMX
    )

    assert response.status_code == 422 and TAKEN in response.text
    other.refresh_from_db()
    assert other.name == "Batch"


# --- The migration that renamed existing duplicates ------------------------------------------

# Accounts as they are now (their time zone and projects came after keys' 0002, apart from it).
BEFORE = [("keys", "0002_apikey_allowed_models"), ("accounts", "0004_projects_and_finance_role")]
AFTER = [("keys", "0003_apikey_unique_names")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_renames_duplicates_oldest_first_and_adds_the_constraint():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        _check_the_migration(executor)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _check_the_migration(executor):
    apps = executor.loader.project_state(BEFORE).apps
    Account = apps.get_model("accounts", "Account")
    Group = apps.get_model("catalogue", "RoutingGroup")
    Key = apps.get_model("keys", "ApiKey")
    acme = Account.objects.create(name="Acme", public_id="acc_1")
    other = Account.objects.create(name="Other", public_id="acc_2")
    group = Group.objects.create(slug="g", name="G")

    def key(account, name, n, **extra):
        return Key.objects.create(
            account=account,
            group=group,
            name=name,
            digest=f"{n:064d}",
            public_id=f"key_{n}",
            created_at=f"2026-01-{n:02d}T00:00:00Z",
            **extra,
        )

    oldest = key(acme, "Backend", 1)
    second = key(acme, "Backend", 2)
    already = key(acme, "Backend (2)", 3)  # a name the suffix must skip
    third = key(acme, "Backend", 4)
    deleted = key(acme, "Backend", 5, deleted_at="2026-02-01T00:00:00Z")
    elsewhere = key(other, "Backend", 6)
    long_name = "x" * 100
    long_a = key(acme, long_name, 7)
    long_b = key(acme, long_name, 8)

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    apps = executor.loader.project_state(AFTER).apps
    Key = apps.get_model("keys", "ApiKey")
    names = dict(Key.objects.values_list("pk", "name"))

    assert names[oldest.pk] == "Backend"
    assert names[already.pk] == "Backend (2)"
    assert {names[second.pk], names[third.pk]} == {"Backend (3)", "Backend (4)"}
    assert names[second.pk] == "Backend (3)"  # in order of creation
    assert names[deleted.pk] == "Backend" and names[elsewhere.pk] == "Backend"
    assert names[long_a.pk] == long_name
    assert names[long_b.pk] == "x" * 96 + " (2)"
    with pytest.raises(IntegrityError), transaction.atomic():
        Key.objects.create(account_id=acme.pk, group_id=group.pk, name="Backend", digest="9" * 64)


def test_the_migrations_suffix_skips_names_already_taken():
    module = importlib.import_module("keys.migrations.0003_apikey_unique_names")
    assert module._free_name("Backend", {"Backend", "Backend (2)"}) == "Backend (3)"
