"""Console pages for webhooks: the signing secret, deliveries and their attempts, redelivery.
Every page for each role and for an outsider."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account, AuditEvent, Role
from core import crypto
from core.delivery import DeliveryStatus
from generation.callbacks import services
from generation.callbacks.services import callback_deliver, callback_schedule
from generation.models import CallbackAttempt, CallbackDelivery
from tests.callbacks.conftest import Answer, finished_task, task_data

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.callbacks.urls")]

HTMX = {"HTTP_HX_REQUEST": "true"}
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def make_delivery(account, model, url="https://hooks.example.com/bytespike", **fields):
    task = finished_task(account, model, url)
    delivery = callback_schedule(task, task_data(task))
    if fields:
        CallbackDelivery.objects.filter(pk=delivery.pk).update(**fields)
        delivery.refresh_from_db()
    return delivery


@pytest.fixture
def delivery(world, image_model):
    delivery = make_delivery(world.account, image_model)
    CallbackAttempt.objects.create(
        delivery=delivery, status_code=500, error="The receiver answered HTTP 500.", duration_ms=42
    )
    return delivery


def detail_url(delivery) -> str:
    return reverse("generation:delivery-detail", args=[delivery.webhook_id])


def redeliver_url(delivery) -> str:
    return reverse("generation:delivery-redeliver", args=[delivery.webhook_id])


# --- Who may see what -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.OWNER, 200), (Role.ADMIN, 200), (Role.DEVELOPER, 403), (Role.VIEWER, 403)],
)
def test_webhook_pages_are_for_owners_and_admins(world, client_for, delivery, role, status):
    client = client_for(world.member(role))

    assert client.get(reverse("generation:webhooks")).status_code == status
    assert client.get(detail_url(delivery)).status_code == status
    assert client.post(reverse("generation:webhook-secret-rotate")).status_code == status
    assert client.post(redeliver_url(delivery), **HTMX).status_code == status


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_roles_without_the_permission_change_nothing(world, client_for, delivery, role):
    client = client_for(world.member(role))
    client.post(reverse("generation:webhook-secret-rotate"))
    client.post(redeliver_url(delivery))

    assert Account.objects.get(pk=world.account.pk).webhook_secret_ciphertext == ""
    assert delivery.attempt_log.count() == 1


def test_an_outsider_gets_404_for_another_accounts_delivery(world, client_for, delivery):
    client = client_for(world.outsider)

    assert client.get(detail_url(delivery)).status_code == 404
    assert client.post(redeliver_url(delivery)).status_code == 404
    page = client.get(reverse("generation:webhooks"))
    assert page.status_code == 200
    assert delivery.webhook_id not in page.content.decode()
    assert delivery.task.public_id not in page.content.decode()
    assert delivery.attempt_log.count() == 1


def test_anonymous_visitors_are_sent_to_log_in(client, delivery):
    for url in (reverse("generation:webhooks"), detail_url(delivery)):
        response = client.get(url)
        assert response.status_code == 302
        assert reverse("account_login") in response["Location"]


def test_settings_show_the_webhooks_tab_to_those_who_may_use_it(world, client_for):
    for role, shown in [(Role.OWNER, True), (Role.ADMIN, True), (Role.DEVELOPER, False)]:
        page = client_for(world.member(role)).get(reverse("accounts:settings")).content.decode()
        assert (f'href="{reverse("generation:webhooks")}"' in page) is shown


# --- The signing secret -----------------------------------------------------------------------


def test_reveal_shows_a_new_secret_once_then_only_its_hint(world, client_for):
    client = client_for(world.owner)
    page = client.get(reverse("generation:webhooks")).content.decode()
    assert "None yet" in page and "Reveal secret" in page

    response = client.post(reverse("generation:webhook-secret-rotate"), **HTMX)

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    account = Account.objects.get(pk=world.account.pk)
    secret = crypto.decrypt(account.webhook_secret_ciphertext)
    body = response.content.decode()
    assert secret.startswith("whsec_") and secret in body
    assert "won\u2019t be shown again" in body
    assert 'data-copy="#webhook-secret-value"' in body
    assert "<html" not in body  # the fragment only

    later = client.get(reverse("generation:webhooks")).content.decode()
    assert secret not in later
    assert secret.removeprefix("whsec_") not in later
    assert account.webhook_secret_hint in later
    assert "Rotate secret" in later


def test_rotate_replaces_the_secret_and_is_audited(world, client_for):
    client = client_for(world.admin)
    first = client.post(reverse("generation:webhook-secret-rotate"))
    old = crypto.decrypt(Account.objects.get(pk=world.account.pk).webhook_secret_ciphertext)
    assert old in first.content.decode()  # without htmx: the whole page, secret shown once

    second = client.post(reverse("generation:webhook-secret-rotate"), **HTMX)

    new = crypto.decrypt(Account.objects.get(pk=world.account.pk).webhook_secret_ciphertext)
    assert new != old
    assert new in second.content.decode() and old not in second.content.decode()
    events = AuditEvent.objects.filter(account=world.account, action="webhook_secret.rotate")
    assert events.count() == 2
    assert {event.actor for event in events} == {world.admin}


def test_the_page_says_a_rotation_is_in_its_overlap_window_and_until_when(
    world, client_for, settings
):
    settings.BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS = 24 * 3600
    client = client_for(world.owner)
    first = client.post(reverse("generation:webhook-secret-rotate"), **HTMX).content.decode()
    assert "also with the previous secret" not in first  # the first secret replaces nothing
    assert "For 24 h afterwards callbacks are signed with both" in (
        client.get(reverse("generation:webhooks")).content.decode()
    )

    rotated = client.post(reverse("generation:webhook-secret-rotate"), **HTMX).content.decode()

    account = Account.objects.get(pk=world.account.pk)
    until = account.webhook_previous_secret_expires_at
    stamp = f'datetime="{until.isoformat()}"'
    assert "also with the previous secret until" in rotated and stamp in rotated
    page = client.get(reverse("generation:webhooks")).content.decode()
    assert 'id="webhook-rotation-overlap"' in page and stamp in page
    assert "A rotation is in its overlap window." in page
    assert account.webhook_previous_secret_hint in page
    assert crypto.decrypt(account.webhook_previous_secret_ciphertext) not in page

    # Once the window has ended, nothing is said about it any more.
    Account.objects.filter(pk=world.account.pk).update(
        webhook_previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    later = client.get(reverse("generation:webhooks")).content.decode()
    assert "webhook-rotation-overlap" not in later
    assert account.webhook_previous_secret_hint not in later


def test_the_secret_is_stored_encrypted(world, client_for):
    response = client_for(world.owner).post(reverse("generation:webhook-secret-rotate"), **HTMX)
    account = Account.objects.get(pk=world.account.pk)
    secret = crypto.decrypt(account.webhook_secret_ciphertext)

    assert secret in response.content.decode()
    assert secret not in account.webhook_secret_ciphertext
    assert secret not in account.webhook_secret_hint


def test_the_page_explains_how_to_verify(world, client_for):
    page = client_for(world.owner).get(reverse("generation:webhooks")).content.decode()

    assert "webhook-signature" in page
    assert "from standardwebhooks import Webhook" in page


# --- CSRF -----------------------------------------------------------------------------------


def test_forms_need_the_csrf_token(world, delivery):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner)

    assert client.post(reverse("generation:webhook-secret-rotate")).status_code == 403
    assert client.post(redeliver_url(delivery), **HTMX).status_code == 403
    assert Account.objects.get(pk=world.account.pk).webhook_secret_ciphertext == ""
    assert delivery.attempt_log.count() == 1

    page = client.get(reverse("generation:webhooks")).content.decode()
    assert 'name="csrfmiddlewaretoken"' in page
    detail = client.get(detail_url(delivery)).content.decode()
    assert 'name="csrfmiddlewaretoken"' in detail


# --- Deliveries -----------------------------------------------------------------------------


def test_deliveries_list_shows_each_delivery(world, client_for, delivery):
    CallbackDelivery.objects.filter(pk=delivery.pk).update(attempts=1, last_status_code=500)
    page = client_for(world.owner).get(reverse("generation:webhooks")).content.decode()

    assert delivery.task.public_id in page
    assert "task.completed" in page
    assert "hooks.example.com" in page
    assert "/bytespike" not in page.split('id="deliveries"')[1]  # the host, not the whole URL
    assert 'data-status="pending"' in page
    assert ">500<" in page
    assert detail_url(delivery) in page


def test_deliveries_filter_by_status_and_page(world, client_for, image_model):
    for _ in range(27):
        make_delivery(world.account, image_model)
    delivered = make_delivery(
        world.account, image_model, status=DeliveryStatus.DELIVERED, delivered_at=timezone.now()
    )
    client = client_for(world.owner)

    first = client.get(reverse("generation:webhooks")).content.decode()
    assert "Page 1 of 2" in first
    second = client.get(reverse("generation:webhooks"), {"page": 2}, **HTMX)
    assert second.status_code == 200
    assert "Page 2 of 2" in second.content.decode()

    only = client.get(reverse("generation:webhooks"), {"status": "delivered"}, **HTMX).content
    only = only.decode()
    assert delivered.task.public_id in only
    assert only.count('data-status="delivered"') == 1
    assert 'data-status="pending"' not in only

    # Unknown filters show everything rather than failing.
    assert client.get(reverse("generation:webhooks"), {"status": "nope"}).status_code == 200


def test_deliveries_fragment_for_htmx_paging(world, client_for, delivery):
    response = client_for(world.owner).get(
        reverse("generation:webhooks"), {"status": "pending"}, HTTP_HX_TARGET="deliveries", **HTMX
    )

    body = response.content.decode()
    assert body.lstrip().startswith('<section class="card card-flush" id="deliveries"')
    assert delivery.task.public_id in body


def test_delivery_detail_lists_every_attempt(world, client_for, delivery):
    CallbackAttempt.objects.create(
        delivery=delivery, status_code=200, duration_ms=17, response_excerpt="thanks", manual=True
    )
    page = client_for(world.admin).get(detail_url(delivery)).content.decode()

    assert delivery.webhook_id in page
    assert delivery.url in page
    assert "The receiver answered HTTP 500." in page
    assert "42 ms" in page and "17 ms" in page
    assert "thanks" in page and "Manual" in page
    assert "Redeliver" in page


def test_a_receivers_html_answer_is_shown_as_text(world, client_for, image_model, receiver):
    receiver.answer(Answer(status=500, body=XSS.encode()))
    delivery = make_delivery(world.account, image_model, receiver.url)
    callback_deliver(delivery.pk)
    assert CallbackAttempt.objects.get(delivery=delivery).response_excerpt == XSS

    page = client_for(world.owner).get(detail_url(delivery)).content.decode()

    assert XSS not in page
    assert ESCAPED in page


def test_a_payload_with_markup_is_escaped(world, client_for, image_model):
    task = finished_task(world.account, image_model, "https://hooks.example.com/")
    data = {**task_data(task), "error": {"code": "x", "message": XSS}}
    delivery = callback_schedule(task, data)

    page = client_for(world.owner).get(detail_url(delivery)).content.decode()

    assert XSS not in page


def test_redeliver_with_htmx_updates_the_delivery_in_place(
    world, client_for, image_model, receiver, enqueued
):
    delivery = make_delivery(world.account, image_model, receiver.url)
    client = client_for(world.owner)

    response = client.post(redeliver_url(delivery), **HTMX)

    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="delivery"')
    assert "Redelivered." in body
    assert 'data-status="delivered"' in body
    assert "Manual" in body
    assert len(receiver.requests) == 1
    assert receiver.requests[0].headers["webhook-id"] == delivery.webhook_id
    attempt = CallbackAttempt.objects.get(delivery=delivery)
    assert attempt.manual
    event = AuditEvent.objects.get(account=world.account, action="callback.redeliver")
    assert event.target == delivery.webhook_id and event.actor == world.owner


def test_redeliver_without_htmx_redirects_to_the_delivery(
    world, client_for, image_model, local_callbacks, enqueued
):
    delivery = make_delivery(world.account, image_model, "http://127.0.0.1:9/unreachable")
    client = client_for(world.admin)

    response = client.post(redeliver_url(delivery))

    assert response.status_code == 302
    assert response["Location"] == detail_url(delivery)
    page = client.get(response["Location"]).content.decode()
    assert "Redelivery failed" in page
    assert "Could not connect" in page


def test_redeliver_while_another_attempt_starts_says_so(world, client_for, delivery, monkeypatch):
    monkeypatch.setattr(services, "callback_deliver", lambda *args, **kwargs: None)

    response = client_for(world.owner).post(redeliver_url(delivery), **HTMX)

    assert response.status_code == 422
    assert "Another attempt of this delivery just started" in response.content.decode()
