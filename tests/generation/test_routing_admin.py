"""Routing configuration in the admin: deployments on a model, aliases on a group, sandbox faults
on a channel. Mistakes that would only show as failed calls are refused on the form."""

import pytest
from django.urls import reverse

from catalogue.models import AIModel, Channel, Deployment, ModelAlias
from tests.factories import AIModelFactory, ChannelFactory, RoutingGroupFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def model_form(model: AIModel, deployments: list[dict], **changes) -> dict:
    data = {
        "slug": model.slug, "display_name": model.display_name, "family": model.family,
        "description": "", "is_active": "on", "capabilities": "[]", "max_attempts": 3,
        "failover_deadline_seconds": 30, "attempt_timeout_seconds": 0, "input_price": 0,
        "output_price": 0,
        "cache_read_price": 0, "cache_write_price": 0, "image_prices": "{}",
        "video_price_per_second": 0, "video_submit_fee": 0, "context_window": 0,
        "max_output_tokens": 0, "max_images": 4, "sizes": "[]", "durations": "[]",
        "aspect_ratios": "[]", "estimated_seconds": 0, "max_run_seconds": 600,
        "cancel_refund_policy": "prorated",
        "deployments-TOTAL_FORMS": len(deployments), "deployments-INITIAL_FORMS": 0,
        "deployments-MIN_NUM_FORMS": 1, "deployments-MAX_NUM_FORMS": 1000,
        **changes,
    }  # fmt: skip
    for n, deployment in enumerate(deployments):
        for field, value in {"is_enabled": "on", "priority": 0, "weight": 1, **deployment}.items():
            if value is not None:
                data[f"deployments-{n}-{field}"] = value
    return data


def save_model(staff_client, model, deployments, **changes):
    Deployment.objects.filter(model=model).delete()
    return staff_client.post(
        reverse("admin:catalogue_aimodel_change", args=[model.pk]),
        model_form(model, deployments, **changes),
    )


def errors_of(response) -> str:
    assert response.status_code == 200, "the form was accepted"
    return response.content.decode()


def test_a_model_with_two_tiers_is_saved(staff_client):
    model = AIModelFactory(slug="gpt-x")
    primary = ChannelFactory(slug="primary", kind="openai")
    standby = ChannelFactory(slug="standby", kind="openai")
    backup = ChannelFactory(slug="backup", kind="openai_compatible")
    response = save_model(staff_client, model, [
        {"channel": primary.pk, "upstream_model": "gpt-x-2025", "priority": 1, "weight": 1},
        {"channel": standby.pk, "upstream_model": "gpt-x", "priority": 1, "weight": 0},
        {"channel": backup.pk, "upstream_model": "gpt-x-prod", "priority": 0, "weight": 1},
    ])  # fmt: skip
    assert response.status_code == 302
    assert list(
        model.deployments.values_list("channel__slug", "upstream_model", "priority", "weight")
    ) == [
        ("primary", "gpt-x-2025", 1, 1),
        ("standby", "gpt-x", 1, 0),
        ("backup", "gpt-x-prod", 0, 1),
    ]


def test_a_deployment_on_a_channel_that_cannot_serve_the_model_is_refused(staff_client):
    model = AIModelFactory(slug="img", family="image")
    claude = ChannelFactory(slug="claude", kind="anthropic", mode="live")
    page = errors_of(
        save_model(staff_client, model, [{"channel": claude.pk, "upstream_model": "x"}])
    )
    assert "cannot serve image models" in page
    assert not model.deployments.exists()
    sandbox = ChannelFactory(slug="claude-sandbox", kind="anthropic", mode="sandbox")
    response = save_model(staff_client, model, [{"channel": sandbox.pk, "upstream_model": "x"}])
    assert response.status_code == 302


def test_a_tier_whose_weights_are_all_zero_is_refused(staff_client):
    model = AIModelFactory(slug="only")
    channel = ChannelFactory(slug="one")
    only = {"channel": channel.pk, "upstream_model": "x", "weight": 0}
    page = errors_of(save_model(staff_client, model, [only]))
    assert "priority tier 0 has a weight of 0" in page


def test_a_model_needs_a_deployment(staff_client):
    model = AIModelFactory(slug="bare")
    page = errors_of(save_model(staff_client, model, []))
    assert "at least one deployment" in page or "Please submit at least 1 form" in page


def group_form(group, aliases: dict[str, str]) -> dict:
    data = {
        "slug": group.slug, "name": group.name, "description": "", "rate_multiplier": "1.000",
        "created_at_0": "2026-12-01", "created_at_1": "10:00:00",
        "grants-TOTAL_FORMS": 0, "grants-INITIAL_FORMS": 0,
        "grants-MIN_NUM_FORMS": 0, "grants-MAX_NUM_FORMS": 1000,
        "aliases-TOTAL_FORMS": len(aliases), "aliases-INITIAL_FORMS": 0,
        "aliases-MIN_NUM_FORMS": 0, "aliases-MAX_NUM_FORMS": 1000,
    }  # fmt: skip
    for n, (alias, target) in enumerate(aliases.items()):
        data[f"aliases-{n}-alias"] = alias
        data[f"aliases-{n}-target"] = target
    return data


def save_group(staff_client, group, aliases):
    return staff_client.post(
        reverse("admin:catalogue_routinggroup_change", args=[group.pk]), group_form(group, aliases)
    )


def test_aliases_are_saved_and_checked(staff_client):
    group = RoutingGroupFactory(slug="team")
    AIModelFactory(slug="gpt-x", groups=[group])
    response = save_group(staff_client, group, {"latest": "smart", "smart": "gpt-x"})
    assert response.status_code == 302
    assert dict(ModelAlias.objects.values_list("alias", "target")) == {
        "latest": "smart", "smart": "gpt-x"
    }  # fmt: skip
    ModelAlias.objects.all().delete()
    page = errors_of(save_group(staff_client, group, {"a": "b", "b": "a"}))
    assert "go round in a circle" in page
    page = errors_of(save_group(staff_client, group, {"gpt-x": "other"}))
    assert "cannot hide it" in page
    page = errors_of(save_group(staff_client, group, {"typo": "gpt-y"}))
    assert "neither a model nor an alias" in page
    assert not ModelAlias.objects.exists()


def channel_form(**changes) -> dict:
    return {
        "slug": "flaky", "name": "Flaky", "kind": "openai", "mode": "sandbox", "base_url": "",
        "is_enabled": "on", "sandbox_failure_rate": "0.3", "sandbox_timeout_rate": "0.05",
        "sandbox_latency_ms": 20, "sandbox_outage_start_0": "", "sandbox_outage_start_1": "",
        "sandbox_outage_end_0": "", "sandbox_outage_end_1": "",
        **changes,
    }  # fmt: skip


def test_sandbox_faults_are_set_on_a_channel_and_checked(staff_client):
    response = staff_client.post(reverse("admin:catalogue_channel_add"), channel_form())
    assert response.status_code == 302
    channel = Channel.objects.get(slug="flaky")
    assert float(channel.sandbox_failure_rate) == 0.3 and channel.sandbox_latency_ms == 20
    page = errors_of(
        staff_client.post(
            reverse("admin:catalogue_channel_add"),
            channel_form(slug="x", sandbox_failure_rate="1.5"),
        )
    )
    assert "A share of calls: from 0 to 1." in page
    page = errors_of(
        staff_client.post(
            reverse("admin:catalogue_channel_add"),
            channel_form(
                slug="y",
                sandbox_outage_start_0="2026-12-04",
                sandbox_outage_start_1="10:00:00",
                sandbox_outage_end_0="2026-12-04",
                sandbox_outage_end_1="09:00:00",
            ),
        )
    )
    assert "must end after it starts" in page
