"""Staff manage the catalogue in the Django admin; upstream secrets never come back in full."""

import pytest
from django.urls import reverse

from catalogue.models import Channel
from tests.factories import AIModelFactory, RoutingGroupFactory, UserFactory, issue_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_catalogue_pages_open_for_staff(staff_client, world):
    group = RoutingGroupFactory(slug="default")
    model = AIModelFactory(groups=[group])
    issue_key(world.account, group)
    for name in [
        "admin:catalogue_routinggroup_changelist",
        "admin:catalogue_channel_changelist",
        "admin:catalogue_aimodel_changelist",
        "admin:keys_apikey_changelist",
        "admin:keys_managementkey_changelist",
        "admin:accounts_account_changelist",
    ]:
        assert staff_client.get(reverse(name)).status_code == 200, name
    assert (
        staff_client.get(reverse("admin:catalogue_aimodel_change", args=[model.pk])).status_code
        == 200
    )
    assert (
        staff_client.get(
            reverse("admin:accounts_account_change", args=[world.account.pk])
        ).status_code
        == 200
    )


def test_channel_secret_is_encrypted_and_never_shown(staff_client):
    secret = "sk-proj-REALupstreamSECRET9876"
    response = staff_client.post(
        reverse("admin:catalogue_channel_add"),
        {"slug": "openai", "name": "OpenAI", "kind": "openai", "mode": "live",
         "base_url": "https://api.openai.com/v1", "secret": secret},
    )  # fmt: skip
    assert response.status_code == 302
    channel = Channel.objects.get(slug="openai")
    assert channel.get_secret() == secret and secret not in channel.secret_ciphertext
    page = staff_client.get(reverse("admin:catalogue_channel_change", args=[channel.pk]))
    assert secret not in page.text and "…9876" in page.text
    # Saving without a new secret keeps the stored one.
    staff_client.post(
        reverse("admin:catalogue_channel_change", args=[channel.pk]),
        {"slug": "openai", "name": "OpenAI", "kind": "openai", "mode": "live",
         "base_url": "https://api.openai.com/v1", "secret": ""},
    )  # fmt: skip
    channel.refresh_from_db()
    assert channel.get_secret() == secret


def test_keys_are_read_only_in_the_admin(staff_client, world):
    key, secret = issue_key(world.account, RoutingGroupFactory(slug="default"))
    page = staff_client.get(reverse("admin:keys_apikey_change", args=[key.pk]))
    assert page.status_code == 200
    assert key.digest not in page.text and secret not in page.text
    assert staff_client.get(reverse("admin:keys_apikey_add")).status_code == 403


def test_non_staff_cannot_open_the_admin(client, world):
    client.force_login(world.owner)
    response = client.get(reverse("admin:catalogue_channel_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response.url
