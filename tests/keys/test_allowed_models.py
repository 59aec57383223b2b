"""A key's model allowlist: the key services' rules, the principal, the key cache, and the
console's create and edit forms."""

from dataclasses import asdict

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from keys import cache as keycache
from keys import services as keys
from keys.auth import KeyPrincipal
from keys.models import ApiKey
from tests.factories import AIModelFactory, RoutingGroupFactory, issue_key

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def groups(db):
    """Two public groups: "default" with two text models and a retired one, "other" with one."""
    default = RoutingGroupFactory(slug="default")
    other = RoutingGroupFactory(slug="other")
    AIModelFactory(slug="small", display_name="Small", groups=[default])
    AIModelFactory(slug="large", display_name="Large", groups=[default])
    AIModelFactory(slug="retired", groups=[default], is_active=False)
    AIModelFactory(slug="elsewhere", display_name="Elsewhere", groups=[other])
    return default, other


# --- The key services ------------------------------------------------------------------------


def test_a_key_keeps_the_models_given_in_order_without_repeats(world, groups):
    key, _ = issue_key(world.account, groups[0], allowed_models=["large", "small", "large"])
    key.refresh_from_db()
    assert key.allowed_models == ["large", "small"]
    assert AuditEvent.objects.get(action="api_key.create").details["allowed_models"] == [
        "large",
        "small",
    ]


def test_no_allowlist_is_every_model_of_the_group(world, groups):
    key, _ = issue_key(world.account, groups[0])
    assert key.allowed_models == []
    principal = KeyPrincipal.from_key(key)
    assert principal.allowed_models == ()
    assert principal.may_call("small") and principal.may_call("anything")


@pytest.mark.parametrize(
    ("allowed", "message"),
    [
        (["gpt-99"], "“gpt-99” is not a model of this key's routing group"),
        (["elsewhere"], "“elsewhere” is not a model of this key's routing group"),
        (["retired"], "“retired” is not a model of this key's routing group"),
        (["small", ""], "“” is not a model"),
        ([f"m{n}" for n in range(keys.MAX_ALLOWED_MODELS + 1)], "at most 100 models"),
        ("small", "Give a list of model ids"),
        ([7], "Give a list of model ids"),
    ],
)
def test_bad_allowlists_are_refused_naming_the_field(world, groups, allowed, message):
    with pytest.raises(keys.KeyRuleError) as error:
        issue_key(world.account, groups[0], allowed_models=allowed)
    assert error.value.field == "allowed_models"
    assert message in str(error.value)
    key, _ = issue_key(world.account, groups[0])
    with pytest.raises(keys.KeyRuleError) as error:
        keys.api_key_update(key=key, allowed_models=allowed)
    assert error.value.field == "allowed_models"
    key.refresh_from_db()
    assert key.allowed_models == []


def test_an_edit_is_checked_against_the_keys_own_group_and_audited(world, groups):
    key, _ = issue_key(world.account, groups[1])
    with pytest.raises(keys.KeyRuleError):
        keys.api_key_update(key=key, allowed_models=["small"])  # of "default", not "other"
    keys.api_key_update(key=key, actor=world.owner, allowed_models=["elsewhere"])
    key.refresh_from_db()
    assert key.allowed_models == ["elsewhere"]
    event = AuditEvent.objects.get(action="api_key.update")
    assert event.details["fields"] == ["allowed_models"]
    assert event.details["before"] == {"allowed_models": "[]"}
    keys.api_key_update(key=key, actor=world.owner, allowed_models=None)  # null: every model
    key.refresh_from_db()
    assert key.allowed_models == []


def test_a_principal_cached_before_allowlists_allows_every_model(world, groups):
    key, _ = issue_key(world.account, groups[0], allowed_models=["small"])
    state = asdict(KeyPrincipal.from_key(key))
    del state["allowed_models"]
    old = object.__new__(KeyPrincipal)
    old.__setstate__(state)
    assert old.allowed_models == () and old.may_call("large")


def test_an_edit_reaches_a_cached_key_at_once(
    client, world, groups, django_capture_on_commit_callbacks
):
    key, secret = issue_key(world.account, groups[0])

    def listed():
        response = client.get("/v1/models", headers={"x-api-key": secret})
        assert response.status_code == 200
        return [entry["id"] for entry in response.json()["data"]]

    assert listed() == ["large", "small"]
    assert keycache.cache.get(keys.key_digest(secret)) is not keycache.MISSING
    with django_capture_on_commit_callbacks(execute=True):
        keys.api_key_update(key=key, actor=world.owner, allowed_models=["small"])
    assert keycache.cache.get(keys.key_digest(secret)) is keycache.MISSING
    assert listed() == ["small"]
    with django_capture_on_commit_callbacks(execute=True):
        keys.api_key_update(key=key, actor=world.owner, allowed_models=[])
    assert listed() == ["large", "small"]


# --- The console -----------------------------------------------------------------------------


def test_the_create_form_offers_the_models_and_sets_the_allowlist(world, client_for, groups):
    client = client_for(world.owner)
    page = client.get(reverse("keys:key-create")).text
    for slug in ("small", "large", "elsewhere"):
        assert f'value="{slug}"' in page
    assert 'value="retired"' not in page

    response = client.post(
        reverse("keys:key-create"),
        {"name": "Backend", "group": groups[0].pk, "allowed_models": ["small"]},
        **HTMX,
    )
    assert response.status_code == 200, response.content
    assert ApiKey.objects.get().allowed_models == ["small"]


def test_the_create_form_refuses_a_model_of_another_group(world, client_for, groups):
    response = client_for(world.owner).post(
        reverse("keys:key-create"),
        {"name": "Backend", "group": groups[0].pk, "allowed_models": ["elsewhere"]},
        **HTMX,
    )
    assert response.status_code == 422
    assert 'id="id_allowed_models_error"' in response.text
    assert "not a model of this key&#x27;s routing group" in response.text
    assert not ApiKey.objects.exists()


def edit(client, key, **data):
    payload = {"name": key.name, **data}
    return client.post(reverse("keys:key-update", args=[key.public_id]), payload, **HTMX)


def test_the_edit_form_sets_and_clears_the_allowlist(world, client_for, groups):
    key, _ = issue_key(world.account, groups[0], actor=world.owner)
    client = client_for(world.owner)
    page = client.get(reverse("keys:key-detail", args=[key.public_id])).text
    assert 'id="key-allowed-models">All<' in page
    assert 'value="small"' in page and 'value="elsewhere"' not in page  # its group's only

    response = edit(client, key, allowed_models=["large", "small"])
    assert response.status_code == 200 and "Saved." in response.text
    key.refresh_from_db()
    assert key.allowed_models == ["large", "small"]
    assert "<code>large</code> <code>small</code>" in response.text  # the facts, out of band
    page = client.get(reverse("keys:key-detail", args=[key.public_id])).text
    assert 'value="large" id="id_allowed_models_0" checked>' in page
    assert 'value="small" id="id_allowed_models_1" checked>' in page

    response = edit(client, key)  # nothing checked: every model
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.allowed_models == []
    assert AuditEvent.objects.filter(action="api_key.update").count() == 2


def test_the_edit_form_refuses_a_model_outside_the_keys_group(world, client_for, groups):
    key, _ = issue_key(world.account, groups[0], actor=world.owner)
    response = edit(client_for(world.owner), key, allowed_models=["elsewhere"])
    assert response.status_code == 422
    assert "is not a model this key can call" in response.text
    key.refresh_from_db()
    assert key.allowed_models == []
