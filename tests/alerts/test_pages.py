"""The console's alerts page: channels, rules, test alerts and the history, for each role and
for an outsider. Owners and admins manage alerts; developers and viewers get a 403."""

import pytest
from django.urls import reverse

from alerts import services
from alerts.models import AlertRule, ChannelKind, NotificationChannel, RuleKind
from tests.alerts.conftest import M
from tests.conftest import run_enqueued
from tests.factories import RoutingGroupFactory, issue_key

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def email_channel(world):
    channel, _ = services.channel_create(
        account=world.account, actor=world.owner, kind=ChannelKind.EMAIL, name="Finance",
        target="finance@acme.test",
    )  # fmt: skip
    return channel


@pytest.fixture
def balance_rule(world, email_channel):
    return services.rule_create(
        account=world.account, actor=world.owner, kind=RuleKind.BALANCE_BELOW,
        channels=[email_channel], threshold=5 * M,
    )  # fmt: skip


@pytest.fixture
def test_delivery(world, email_channel):
    return services.channel_test(channel=email_channel, actor=world.owner)


def every_view(channel, rule, delivery) -> list[tuple[str, str]]:
    return [
        ("get", reverse("alerts:alerts")),
        ("post", reverse("alerts:channel-create")),
        ("get", reverse("alerts:channel-edit", args=[channel.public_id])),
        ("post", reverse("alerts:channel-edit", args=[channel.public_id])),
        ("post", reverse("alerts:channel-delete", args=[channel.public_id])),
        ("post", reverse("alerts:channel-rotate", args=[channel.public_id])),
        ("post", reverse("alerts:channel-test", args=[channel.public_id])),
        ("get", reverse("alerts:delivery-status", args=[delivery.webhook_id])),
        ("post", reverse("alerts:rule-create")),
        ("get", reverse("alerts:rule-edit", args=[rule.public_id])),
        ("post", reverse("alerts:rule-edit", args=[rule.public_id])),
        ("post", reverse("alerts:rule-delete", args=[rule.public_id])),
    ]


# --- Who may see what ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_developers_and_viewers_get_403_everywhere_and_change_nothing(
    world, client_for, email_channel, balance_rule, test_delivery, role
):
    client = client_for(world.member(role))
    for method, url in every_view(email_channel, balance_rule, test_delivery):
        assert getattr(client, method)(url, **HTMX).status_code == 403, url
    assert NotificationChannel.objects.filter(pk=email_channel.pk).exists()
    assert AlertRule.objects.filter(pk=balance_rule.pk).exists()


def test_an_outsider_gets_404_for_another_accounts_objects(
    world, client_for, email_channel, balance_rule, test_delivery
):
    client = client_for(world.outsider)  # an owner, of another account
    for method, url in every_view(email_channel, balance_rule, test_delivery)[2:]:
        if url.endswith(reverse("alerts:rule-create")) or url == reverse("alerts:channel-create"):
            continue
        assert getattr(client, method)(url, **HTMX).status_code == 404, url
    assert NotificationChannel.objects.filter(pk=email_channel.pk).exists()
    assert AlertRule.objects.filter(pk=balance_rule.pk).exists()


@pytest.mark.parametrize(("role", "shown"), [("owner", True), ("admin", True), ("viewer", False)])
def test_the_navigation_links_the_page_for_the_roles_that_may_open_it(
    world, client_for, role, shown
):
    page = client_for(world.member(role)).get(reverse("billing:wallet")).content.decode()
    assert (f'href="{reverse("alerts:alerts")}"' in page) is shown


def test_the_page_lists_channels_rules_and_the_history(
    world, client_for, email_channel, balance_rule, test_delivery
):
    page = client_for(world.admin).get(reverse("alerts:alerts"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Finance" in html and "finance@acme.test" in html
    assert "Available balance below 5.00 credits" in html
    assert "Test alert for Finance" in html and 'data-status="pending"' in html


# --- Channels -----------------------------------------------------------------------------------


def test_adding_a_webhook_shows_its_secret_once(world, client_for, receiver):
    client = client_for(world.owner)
    response = client.post(
        reverse("alerts:channel-create"),
        {"kind": "webhook", "name": "Ops", "target": receiver.url},
        **HTMX,
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    channel = NotificationChannel.objects.get(name="Ops")
    secret = services.channel_target(channel).secret
    assert secret in response.content.decode()
    assert secret not in client.get(reverse("alerts:alerts")).content.decode()


@pytest.mark.parametrize(
    ("kind", "target", "problem"),
    [
        ("webhook", "https://127.0.0.1/hook", "The URL is not a public address (loopback)."),
        ("webhook", "https://169.254.169.254/latest", "The URL is not a public address"),
        ("webhook", "https://192.168.0.5/hook", "The URL is not a public address (private)."),
        ("webhook", "https://metadata.google.internal/x", "must not point to an internal host"),
        ("slack", "https://example.com/services/T/B/x", "Slack incoming webhook URL looks like"),
        ("email", "not-an-address", "is not a valid email address"),
    ],
)
def test_a_refused_target_is_a_form_error_naming_the_problem(
    world, client_for, strict_callbacks, kind, target, problem
):
    response = client_for(world.owner).post(
        reverse("alerts:channel-create"), {"kind": kind, "name": "x", "target": target}, **HTMX
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert problem in html and 'id="channel_target_error"' in html
    assert not NotificationChannel.objects.exists()


def test_editing_a_channel_disables_it_and_checks_its_url(
    world, client_for, receiver, strict_callbacks
):
    channel, _ = services.channel_create(
        account=world.account, actor=world.owner, kind=ChannelKind.EMAIL, name="Finance",
        target="a@acme.test",
    )  # fmt: skip
    url = reverse("alerts:channel-edit", args=[channel.public_id])
    client = client_for(world.owner)
    assert client.get(url).status_code == 200

    response = client.post(url, {"name": "Finance team", "target": "b@acme.test"}, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == reverse("alerts:alerts")
    channel.refresh_from_db()
    assert (channel.name, channel.target, channel.enabled) == ("Finance team", "b@acme.test", False)

    response = client.post(url, {"name": "x", "target": "nope", "enabled": "on"}, **HTMX)
    assert (
        response.status_code == 422 and "is not a valid email address" in response.content.decode()
    )


def test_deleting_a_channel_keeps_its_history(world, client_for, email_channel, test_delivery):
    response = client_for(world.owner).post(
        reverse("alerts:channel-delete", args=[email_channel.public_id]), **HTMX
    )
    assert response.status_code == 200
    assert not NotificationChannel.objects.exists()
    test_delivery.refresh_from_db()
    assert test_delivery.channel is None and test_delivery.channel_name == "Finance"


def test_a_test_alert_is_queued_then_shows_its_result(
    world, client_for, receiver, enqueued, django_capture_on_commit_callbacks
):
    channel, _ = services.channel_create(
        account=world.account, actor=world.owner, kind=ChannelKind.SLACK, name="#ops",
        target=receiver.url,
    )  # fmt: skip
    client = client_for(world.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("alerts:channel-test", args=[channel.public_id]), **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Test queued" in html and 'hx-trigger="every 2s"' in html
    assert receiver.requests == []  # sent by a worker, not by the request

    run_enqueued(enqueued)
    (delivery,) = channel.deliveries.all()
    polled = client.get(reverse("alerts:delivery-status", args=[delivery.webhook_id]), **HTMX)
    assert polled.status_code == 286  # htmx stops polling
    assert "Test delivered" in polled.content.decode()
    assert "Test alert for #ops" in receiver.requests[0].body.decode()


def test_a_failed_test_alert_shows_the_error(
    world, client_for, local_callbacks, enqueued, django_capture_on_commit_callbacks
):
    channel, _ = services.channel_create(
        account=world.account, actor=world.owner, kind=ChannelKind.WEBHOOK, name="Down",
        target="http://127.0.0.1:9/hooks",
    )  # fmt: skip
    client = client_for(world.owner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("alerts:channel-test", args=[channel.public_id]), **HTMX)
    run_enqueued(enqueued[:1])
    (delivery,) = channel.deliveries.all()
    polled = client.get(reverse("alerts:delivery-status", args=[delivery.webhook_id]), **HTMX)
    html = polled.content.decode()
    assert polled.status_code == 286 and "Test failed" in html and "Could not connect" in html
    assert "Retrying." in html


# --- Rules --------------------------------------------------------------------------------------


def test_adding_rules_of_each_kind(world, client_for, email_channel):
    key, _ = issue_key(world.account, RoutingGroupFactory(), name="CI", quota=10 * M)
    client = client_for(world.admin)
    url = reverse("alerts:rule-create")
    channels = [email_channel.public_id]
    for fields in (
        {"kind": "balance_below", "threshold": "12.5"},
        {"kind": "monthly_spend", "threshold": "1,000"},
        {"kind": "key_quota", "api_key": key.public_id},
        {"kind": "key_quota"},
        {"kind": "callback_failures", "streak": "5"},
    ):
        response = client.post(url, {**fields, "channels": channels}, **HTMX)
        assert response.status_code == 200, response.content.decode()
    rules = list(AlertRule.objects.order_by("pk"))
    assert [r.threshold for r in rules] == [12_500_000, 1000 * M, None, None, None]
    assert [r.api_key for r in rules] == [None, None, key, None, None]
    assert rules[-1].streak == 5
    assert all(list(r.channels.all()) == [email_channel] for r in rules)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "balance_below", "threshold": ""}, "Enter the threshold in credits."),
        ({"kind": "monthly_spend", "threshold": "-3"}, "The amount cannot be negative."),
        ({"kind": "balance_below", "threshold": "0"}, "The amount must be more than zero."),
        ({"kind": "callback_failures"}, "Enter how many failed callbacks in a row"),
        ({"kind": "key_quota", "api_key": "key_someone_elses"}, "Select a valid choice."),
    ],
)
def test_a_rule_with_bad_input_is_refused_with_the_problem(
    world, client_for, email_channel, fields, problem
):
    response = client_for(world.owner).post(
        reverse("alerts:rule-create"), {**fields, "channels": [email_channel.public_id]}, **HTMX
    )
    assert response.status_code == 422
    assert problem in response.content.decode()
    assert not AlertRule.objects.exists()


def test_a_rule_needs_a_channel_of_this_account(world, client_for, email_channel):
    other, _ = services.channel_create(
        account=world.outsider_account, actor=world.outsider, kind=ChannelKind.EMAIL,
        name="Theirs", target="x@other.test",
    )  # fmt: skip
    response = client_for(world.owner).post(
        reverse("alerts:rule-create"),
        {"kind": "balance_below", "threshold": "5", "channels": [other.public_id]},
        **HTMX,
    )
    assert response.status_code == 422 and not AlertRule.objects.exists()


def test_editing_a_rule_disables_it_and_changes_its_threshold(
    world, client_for, email_channel, balance_rule
):
    url = reverse("alerts:rule-edit", args=[balance_rule.public_id])
    client = client_for(world.owner)
    page = client.get(url).content.decode()
    assert 'name="threshold"' in page and 'name="streak"' not in page

    response = client.post(url, {"threshold": "7", "channels": [email_channel.public_id]}, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == reverse("alerts:alerts")
    balance_rule.refresh_from_db()
    assert (balance_rule.threshold, balance_rule.enabled) == (7 * M, False)


def test_deleting_a_rule(world, client_for, balance_rule):
    response = client_for(world.owner).post(
        reverse("alerts:rule-delete", args=[balance_rule.public_id]), **HTMX
    )
    assert response.status_code == 200 and not AlertRule.objects.exists()


def test_staff_see_alerts_in_the_admin_without_any_secret(
    client, world, receiver, balance_rule, test_delivery
):
    from tests.factories import UserFactory

    channel, secret = services.channel_create(
        account=world.account, actor=world.owner, kind=ChannelKind.WEBHOOK, name="Ops",
        target=receiver.url,
    )  # fmt: skip
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    for name in ("notificationchannel", "alertrule", "alert"):
        assert client.get(reverse(f"admin:alerts_{name}_changelist")).status_code == 200
    page = client.get(reverse("admin:alerts_notificationchannel_change", args=[channel.pk]))
    assert page.status_code == 200 and secret not in page.content.decode()
    alert = test_delivery.alert
    assert client.get(reverse("admin:alerts_alert_change", args=[alert.pk])).status_code == 200


def test_test_alerts_are_limited_per_account(world, client_for, email_channel, settings):
    from alerts.services import TEST_ALERTS_PER_HOUR

    client = client_for(world.owner)
    url = reverse("alerts:channel-test", args=[email_channel.public_id])
    for _ in range(TEST_ALERTS_PER_HOUR):
        assert client.post(url, **HTMX).status_code == 200
    refused = client.post(url, **HTMX)
    assert refused.status_code == 422
    assert f"At most {TEST_ALERTS_PER_HOUR} test alerts an hour" in refused.content.decode()
    assert email_channel.deliveries.count() == TEST_ALERTS_PER_HOUR


def test_a_monthly_spend_rule_names_the_accounts_time_zone(world, client_for, email_channel):
    world.account.time_zone = "Europe/Paris"
    world.account.save(update_fields=["time_zone"])
    services.rule_create(
        account=world.account, actor=world.owner, kind=RuleKind.MONTHLY_SPEND,
        channels=[email_channel], threshold=100 * M,
    )  # fmt: skip
    page = client_for(world.owner).get("/alerts/").text
    assert "Spend in a calendar month (Europe/Paris) reaches 100.00 credits" in page
