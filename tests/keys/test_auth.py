"""Data-plane key authentication, through GET /v1/models (the first route that uses it)."""

from dataclasses import asdict
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from keys import cache as keycache
from keys import services as keys
from keys.auth import KeyPrincipal, principal_for_console
from keys.models import ApiKey, KeyStatus
from keys.services import key_digest
from tests.factories import AIModelFactory, RoutingGroupFactory, issue_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def group(world):
    group = RoutingGroupFactory(slug="claude-default")
    AIModelFactory(slug="claude-sonnet-4-5", groups=[group])
    return group


@pytest.fixture
def key(world, group):
    return issue_key(world.account, group, name="server", actor=world.owner)


def models(client, **headers):
    return client.get("/v1/models", headers=headers)


@pytest.mark.parametrize(
    "header",
    [
        lambda s: {"x-api-key": s},
        lambda s: {"authorization": f"Bearer {s}"},
        lambda s: {"x-goog-api-key": s},
    ],
)
def test_each_header_form_authenticates(client, key, header):
    response = models(client, **header(key[1]))
    assert response.status_code == 200
    assert response.headers["X-Request-ID"].startswith("req_")


def test_query_parameter_authenticates(client, key):
    assert client.get(f"/v1/models?key={key[1]}").status_code == 200


def test_x_api_key_wins_when_several_are_sent(client, key):
    secret = key[1]
    assert (
        models(client, **{"x-api-key": secret, "authorization": "Bearer junk"}).status_code == 200
    )
    bad_first = models(
        client, **{"x-api-key": "sk-byts-" + "x" * 40, "authorization": f"Bearer {secret}"}
    )
    assert bad_first.status_code == 401


def test_missing_key_is_401_in_each_protocols_envelope(client, key):
    openai = models(client)
    assert openai.status_code == 401
    assert openai.json()["error"]["code"] == "invalid_api_key"
    assert openai.json()["error"]["type"] == "authentication_error"
    anthropic = models(client, **{"anthropic-version": "2023-06-01"})
    assert anthropic.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": anthropic.json()["error"]["message"]},
    }
    google = client.get("/v1beta/models")
    assert google.status_code == 401
    assert google.json()["error"]["status"] == "UNAUTHENTICATED"
    assert google.json()["error"]["code"] == 401


@pytest.mark.parametrize(
    "secret",
    ["sk-byts-short", "not-a-key", "sk-byts-" + "!" * 40, "sk-byts-" + "a" * 200, "' OR 1=1 --"],
)
def test_malformed_keys_are_refused_before_any_query(
    client, key, secret, django_assert_num_queries
):
    with django_assert_num_queries(0):
        response = models(client, **{"x-api-key": secret})
    assert response.status_code == 401


def test_unknown_well_formed_key_is_401(client, key):
    assert models(client, **{"x-api-key": "sk-byts-" + "Z" * 40}).status_code == 401


def test_management_key_cannot_call_the_data_plane(client, world, key):
    _, secret = keys.management_key_issue(account=world.account, actor=world.owner, name="ops")
    response = models(client, **{"x-api-key": secret})
    assert response.status_code == 401
    assert "management API" in response.json()["error"]["message"]


def test_revoked_key_is_refused_at_once_even_when_cached(
    client, world, key, django_capture_on_commit_callbacks
):
    api_key, secret = key
    assert models(client, **{"x-api-key": secret}).status_code == 200
    assert keycache.cache.get(key_digest(secret)) is not keycache.MISSING
    with django_capture_on_commit_callbacks(execute=True):
        keys.api_key_revoke(key=api_key, actor=world.owner)
    assert keycache.cache.get(key_digest(secret)) is keycache.MISSING
    response = models(client, **{"x-api-key": secret})
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]


def test_rolled_key_old_secret_fails_new_secret_works(
    client, world, key, django_capture_on_commit_callbacks
):
    api_key, old = key
    models(client, **{"x-api-key": old})
    with django_capture_on_commit_callbacks(execute=True):
        new = keys.api_key_roll(key=api_key, actor=world.owner)
    assert models(client, **{"x-api-key": old}).status_code == 401
    assert models(client, **{"x-api-key": new}).status_code == 200


def test_deleted_key_is_refused(client, world, key, django_capture_on_commit_callbacks):
    api_key, secret = key
    with django_capture_on_commit_callbacks(execute=True):
        keys.api_key_delete(key=api_key, actor=world.owner)
    assert models(client, **{"x-api-key": secret}).status_code == 401


def test_expiry_is_checked_on_every_request_even_when_cached(client, world, group, monkeypatch):
    _, secret = issue_key(world.account, group, expires_at=timezone.now() + timedelta(minutes=5))
    assert models(client, **{"x-api-key": secret}).status_code == 200
    later = timezone.now() + timedelta(minutes=6)
    monkeypatch.setattr("keys.auth.timezone.now", lambda: later)
    response = models(client, **{"x-api-key": secret})
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("allow", "deny", "address", "status"),
    [
        (["10.0.0.0/8"], [], "10.1.2.3", 200),
        (["10.0.0.0/8"], [], "192.168.1.1", 403),
        ([], ["192.168.0.0/16"], "192.168.1.1", 403),
        ([], ["192.168.0.0/16"], "8.8.8.8", 200),
        (["10.0.0.0/8"], ["10.9.0.0/16"], "10.9.1.1", 403),
        (["203.0.113.7/32"], [], "::ffff:203.0.113.7", 200),
        (["2001:db8::/32"], [], "2001:db8::1", 200),
        (["2001:db8::/32"], [], "2001:db9::1", 403),
    ],
)
def test_ip_allow_and_deny_lists(client, world, group, allow, deny, address, status):
    _, secret = issue_key(world.account, group, ip_allowlist=allow, ip_denylist=deny)
    response = client.get("/v1/models", headers={"x-api-key": secret}, REMOTE_ADDR=address)
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"]["code"] == "permission_denied"


def test_client_address_from_a_trusted_proxy_header(client, world, group, settings):
    settings.BYTESPIKE_CLIENT_IP_HEADER = "X-Forwarded-For"
    settings.BYTESPIKE_TRUSTED_PROXIES = 1
    _, secret = issue_key(world.account, group, ip_allowlist=["198.51.100.0/24"])
    ok = {"x-api-key": secret, "x-forwarded-for": "10.0.0.1, 198.51.100.9"}
    assert client.get("/v1/models", headers=ok, REMOTE_ADDR="10.0.0.2").status_code == 200
    # A client cannot spoof its way in by prepending addresses: the proxy's entry is used.
    spoof = {"x-api-key": secret, "x-forwarded-for": "198.51.100.9, 10.0.0.1"}
    assert client.get("/v1/models", headers=spoof, REMOTE_ADDR="10.0.0.2").status_code == 403


def test_without_a_proxy_setting_forwarded_headers_are_ignored(client, world, group):
    _, secret = issue_key(world.account, group, ip_allowlist=["198.51.100.0/24"])
    headers = {"x-api-key": secret, "x-forwarded-for": "198.51.100.9"}
    assert client.get("/v1/models", headers=headers, REMOTE_ADDR="10.0.0.2").status_code == 403


def test_last_used_is_written_at_most_once_a_minute(client, key):
    api_key, secret = key
    models(client, **{"x-api-key": secret})
    first = ApiKey.objects.get(pk=api_key.pk).last_used_at
    assert first is not None
    models(client, **{"x-api-key": secret})
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first


def test_a_rejected_key_writes_nothing(client, world, group, django_assert_num_queries):
    api_key, secret = issue_key(world.account, group)
    ApiKey.objects.filter(pk=api_key.pk).update(status="revoked")
    with django_assert_num_queries(1):  # the lookup only
        assert models(client, **{"x-api-key": secret}).status_code == 401
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at is None


def test_warm_key_cache_keeps_queries_bounded(client, key, django_assert_num_queries):
    secret = key[1]
    models(client, **{"x-api-key": secret})
    # Only the wallet, for the headers: the key and the catalogue come from caches.
    with django_assert_num_queries(1):
        assert models(client, **{"x-api-key": secret}).status_code == 200


def test_cache_is_keyed_by_the_whole_digest(client, world, group):
    _, secret = issue_key(world.account, group)
    models(client, **{"x-api-key": secret})
    # Same prefix, different tail: must not hit the first key's cache entry.
    impostor = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert models(client, **{"x-api-key": impostor}).status_code == 401


# --- Paused keys -----------------------------------------------------------------------------


def pause_message(key) -> str:
    return (
        "This API key is paused. Resume it in the console, or PATCH "
        f'/api/v1/keys/{key.public_id} with {{"status": "active"}}.'
    )


def test_paused_key_is_refused_at_once_even_when_cached_and_works_again_when_resumed(
    client, world, key, django_capture_on_commit_callbacks
):
    api_key, secret = key
    assert models(client, **{"x-api-key": secret}).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        keys.api_key_update(key=api_key, actor=world.owner, status=KeyStatus.PAUSED)
    assert keycache.cache.get(key_digest(secret)) is keycache.MISSING

    refused = models(client, **{"x-api-key": secret})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert refused.json()["error"]["message"] == pause_message(api_key)
    google = client.get("/v1beta/models", headers={"x-goog-api-key": secret})
    assert google.status_code == 403 and google.json()["error"]["status"] == "PERMISSION_DENIED"

    with django_capture_on_commit_callbacks(execute=True):
        keys.api_key_update(key=api_key, actor=world.owner, status=KeyStatus.ACTIVE)
    assert models(client, **{"x-api-key": secret}).status_code == 200


def test_a_paused_key_writes_nothing(client, world, key):
    api_key, secret = key
    keys.api_key_update(key=api_key, actor=world.owner, status=KeyStatus.PAUSED)
    assert models(client, **{"x-api-key": secret}).status_code == 403
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at is None


def test_a_paused_key_from_a_refused_address_hears_only_about_the_address(client, world, group):
    api_key, secret = issue_key(world.account, group, ip_allowlist=["10.0.0.0/8"])
    keys.api_key_update(key=api_key, actor=world.owner, status=KeyStatus.PAUSED)
    response = client.get("/v1/models", headers={"x-api-key": secret}, REMOTE_ADDR="192.0.2.1")
    assert response.status_code == 403
    assert "IP address" in response.json()["error"]["message"]


def test_a_revoked_key_stays_401_not_paused(client, world, key):
    api_key, secret = key
    keys.api_key_update(key=api_key, actor=world.owner, status=KeyStatus.PAUSED)
    keys.api_key_revoke(key=api_key, actor=world.owner)
    response = models(client, **{"x-api-key": secret})
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]


def test_the_playground_cannot_use_a_paused_key(world, key):
    api_key, _ = key
    membership = world.membership(world.owner)
    assert principal_for_console(membership, api_key.public_id, address="127.0.0.1") is not None
    keys.api_key_update(key=api_key, actor=world.owner, status=KeyStatus.PAUSED)
    assert principal_for_console(membership, api_key.public_id, address="127.0.0.1") is None


# --- What the principal carries --------------------------------------------------------------


def test_principal_carries_every_limit_with_none_for_no_limit(world, group):
    limited, _ = issue_key(
        world.account,
        group,
        quota=5_000_000,
        rate_limit_5h=1_000_000,
        rate_limit_1d=2_000_000,
        rate_limit_7d=3_000_000,
        rpm=60,
        tpm=90_000,
        max_concurrent=4,
    )
    free, _ = issue_key(world.account, group)

    principal = KeyPrincipal.from_key(limited)
    assert (principal.quota, principal.rate_limit_5h, principal.rate_limit_1d) == (
        5_000_000,
        1_000_000,
        2_000_000,
    )
    assert principal.rate_limit_7d == 3_000_000
    assert (principal.rpm, principal.tpm, principal.max_concurrent) == (60, 90_000, 4)
    unlimited = KeyPrincipal.from_key(free)
    for name in ("quota", "rate_limit_5h", "rate_limit_1d", "rate_limit_7d"):
        assert getattr(unlimited, name) is None, name
    assert unlimited.rpm is unlimited.tpm is unlimited.max_concurrent is None
    cache.set("principal", principal)  # pickled, as the key cache keeps it
    assert cache.get("principal") == principal


def test_a_principal_cached_by_the_previous_release_reads_zero_as_no_limit(world, group):
    """During a deploy the cache still holds principals of the previous release for a moment:
    0 meant "unlimited" there, and rpm, tpm and max_concurrent did not exist."""
    key, _ = issue_key(world.account, group, quota=5_000_000)
    state = asdict(KeyPrincipal.from_key(key))
    state.update(rate_limit_5h=0, rate_limit_1d=0, rate_limit_7d=0)
    for name in ("rpm", "tpm", "max_concurrent"):
        del state[name]
    old = object.__new__(KeyPrincipal)
    old.__setstate__(state)

    assert old.quota == 5_000_000
    assert old.rate_limit_5h is old.rate_limit_1d is old.rate_limit_7d is None
    assert old.rpm is old.tpm is old.max_concurrent is None
