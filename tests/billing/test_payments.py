"""Top-ups through a payment provider: the sandbox provider end to end through its webhook, the
Stripe adapter against a fake HTTP client and Stripe-signed payloads, the one-time credit, the
receipt, the pages for each role, and the runway."""

import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
import stripe
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from billing import jobs, topups
from billing.errors import BillingError
from billing.invariants import wallet_problems
from billing.models import LedgerEntry, Payment, Wallet
from billing.payments import CheckoutRequest, PaymentError, WebhookError, sandbox
from billing.payments.stripe import StripeProvider
from billing.services import wallet_open
from tests.billing.test_pages import bill, text_of
from tests.factories import AIModelFactory, RoutingGroupFactory, fund, issue_key

pytestmark = pytest.mark.django_db

M = 1_000_000
SITE = "http://testserver"
SANDBOX_SECRET = "sandbox-secret-for-tests"


@pytest.fixture(autouse=True)
def _sandbox(settings, world):
    settings.BYTESPIKE_PAYMENT_PROVIDER = "sandbox"
    settings.BYTESPIKE_SANDBOX_PAYMENT_SECRET = SANDBOX_SECRET
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    wallet_open(account=world.account)
    wallet_open(account=world.outsider_account)


def start(world, amount=25 * M, user=None) -> Payment:
    payment, _ = topups.payment_start(
        account=world.account, actor=user or world.owner, amount=amount, site=SITE
    )
    return payment


def sandbox_event(payment: Payment, *, paid=True, secret=SANDBOX_SECRET, **changes):
    data = {
        "provider_payment_id": payment.provider_payment_id,
        "payment_id": payment.public_id,
        "account_id": payment.account.public_id,
        "amount": payment.amount,
        "paid": paid,
        **changes,
    }
    return sandbox.SandboxProvider(secret=secret).event_build(**data)


def deliver(client, body: bytes, headers: dict, provider="sandbox"):
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    return client.post(
        reverse("billing:payment-webhook", args=[provider]),
        data=body,
        content_type="application/json",
        **extra,
    )


def balance(world) -> int:
    return Wallet.objects.get(account=world.account).balance


# --- The one-time credit -----------------------------------------------------------------------


def test_a_sandbox_payment_delivered_twice_lands_in_the_ledger_once(world, client):
    payment = start(world)
    assert (payment.status, balance(world)) == ("pending", 0)
    body, headers = sandbox_event(payment)

    first = deliver(client, body, headers)
    second = deliver(client, body, headers)

    assert first.status_code == second.status_code == 200
    assert (first.json()["credited"], second.json()["credited"]) == (True, False)
    assert second.json()["status"] == "paid"
    entries = LedgerEntry.objects.filter(account=world.account, kind="topup")
    assert [(e.amount, e.reference) for e in entries] == [(25 * M, payment.provider_payment_id)]
    assert balance(world) == 25 * M
    payment.refresh_from_db()
    assert payment.status == "paid" and payment.paid_at is not None
    assert wallet_problems(world.account.pk) == []
    (event,) = world.account.audit_events.filter(action="wallet.topup")
    assert event.actor == world.owner and payment.public_id in event.target


def test_a_second_event_of_the_same_payment_with_a_new_event_id_is_a_no_op(world):
    payment = start(world)
    for _ in range(3):  # each build is a new event id, as a provider's retries may be
        body, headers = sandbox_event(payment)
        topups.payment_webhook_receive(provider_name="sandbox", payload=body, headers=headers)
    assert balance(world) == 25 * M
    assert LedgerEntry.objects.filter(kind="topup").count() == 1


def test_the_receipt_is_queued_after_the_commit_and_emailed_to_the_payer(
    world, django_capture_on_commit_callbacks, mailoutbox
):
    payment = start(world, 40 * M, user=world.admin)
    body, headers = sandbox_event(payment)
    with django_capture_on_commit_callbacks() as callbacks:
        topups.payment_webhook_receive(provider_name="sandbox", payload=body, headers=headers)
    assert len(callbacks) == 1
    with django_capture_on_commit_callbacks() as again:
        topups.payment_webhook_receive(provider_name="sandbox", payload=body, headers=headers)
    assert again == []  # a duplicate sends no second receipt
    assert jobs.payment_receipt(payment.pk) == 1
    (message,) = mailoutbox
    assert message.to == ["admin@acme.test"]
    assert "40.00 credits added to Acme" in message.subject
    assert payment.public_id in message.body and "Balance after the top-up: 40.00" in message.body


def test_a_bad_signature_is_a_400_and_credits_nothing(world, client):
    payment = start(world)
    body, headers = sandbox_event(payment, secret="not-the-secret")
    response = deliver(client, body, headers)
    assert response.status_code == 400
    assert response.json()["error"] == "The signature does not match."
    body, _ = sandbox_event(payment)
    assert deliver(client, body, {}).status_code == 400  # no signature at all
    tampered, headers = sandbox_event(payment)
    tampered = tampered.replace(b'"amount": 25000000', b'"amount": 99000000')
    assert deliver(client, tampered, headers).status_code == 400
    assert balance(world) == 0 and Payment.objects.get().status == "pending"


def test_an_old_event_is_refused(world):
    payment = start(world)
    body, _ = sandbox_event(payment)
    stale = {sandbox.SIGNATURE_HEADER: sandbox.sign(body, SANDBOX_SECRET, at=1)}
    with pytest.raises(WebhookError, match="too old"):
        topups.payment_webhook_receive(provider_name="sandbox", payload=body, headers=stale)


def test_an_event_that_names_another_account_or_amount_is_refused(world):
    payment = start(world)
    body, headers = sandbox_event(payment, account_id=world.outsider_account.public_id)
    with pytest.raises(WebhookError, match="does not match"):
        topups.payment_webhook_receive(provider_name="sandbox", payload=body, headers=headers)
    body, headers = sandbox_event(payment, amount=26 * M)
    with pytest.raises(WebhookError, match="amount paid does not match"):
        topups.payment_webhook_receive(provider_name="sandbox", payload=body, headers=headers)
    body, headers = sandbox_event(payment, payment_id="pay_unknown")
    with pytest.raises(WebhookError, match="No sandbox payment"):
        topups.payment_webhook_receive(provider_name="sandbox", payload=body, headers=headers)
    assert balance(world) == 0


def test_a_declined_payment_fails_and_a_later_paid_event_still_credits_it(world):
    payment = start(world)
    body, headers = sandbox_event(payment, paid=False)
    outcome = topups.payment_webhook_receive(provider_name="sandbox", payload=body, headers=headers)
    assert (outcome.payment.status, outcome.credited, balance(world)) == ("failed", False, 0)
    body, headers = sandbox_event(payment)
    outcome = topups.payment_webhook_receive(provider_name="sandbox", payload=body, headers=headers)
    assert (outcome.payment.status, outcome.credited, balance(world)) == ("paid", True, 25 * M)
    # ...and a late "failed" never takes a paid payment back.
    body, headers = sandbox_event(payment, paid=False)
    topups.payment_webhook_receive(provider_name="sandbox", payload=body, headers=headers)
    assert Payment.objects.get().status == "paid" and balance(world) == 25 * M


def test_the_webhook_of_a_provider_that_is_not_set_up_is_a_404(world, client, settings):
    payment = start(world)
    body, headers = sandbox_event(payment)
    settings.BYTESPIKE_PAYMENT_PROVIDER = "none"
    assert deliver(client, body, headers).status_code == 404
    assert deliver(client, body, headers, provider="stripe").status_code == 404
    assert deliver(client, body, headers, provider="paypal").status_code == 404
    assert balance(world) == 0


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (4 * M, "Top up between 5.00 and 10,000.00 credits."),
        (10_001 * M, "Top up between 5.00 and 10,000.00 credits."),
        (5 * M + 1, "Top up in whole cents: at most two decimals."),
    ],
)
def test_amounts_out_of_bounds_are_refused_before_any_payment_row(world, amount, message):
    with pytest.raises(BillingError) as refused:
        start(world, amount)
    assert refused.value.message == message
    assert not Payment.objects.exists()


# --- Stripe ------------------------------------------------------------------------------------

WHSEC = "whsec_test_secret"


class FakeStripeHttp(stripe.HTTPClient):
    """Stands in for the network: records what stripe-python sends, answers like Stripe."""

    name = "fake"

    def __init__(self, status=200, answer=None):
        super().__init__()
        self.requests = []
        self.status = status
        self.answer = answer

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        self.requests.append((method, url, dict(headers or {}), post_data))
        answer = self.answer or {
            "id": "cs_test_a1b2c3",
            "object": "checkout.session",
            "url": "https://checkout.stripe.com/c/pay/cs_test_a1b2c3",
        }
        return json.dumps(answer), self.status, {}

    def close(self):
        pass


def stripe_signed(event: dict, secret: str = WHSEC) -> tuple[bytes, dict]:
    """Signed as Stripe documents it: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<body>")."""
    body = json.dumps(event).encode()
    at = int(time.time())
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={at},v1={mac}"}


def session_event(payment: Payment, kind="checkout.session.completed", **session) -> dict:
    return {
        "id": "evt_1",
        "object": "event",
        "type": kind,
        "data": {
            "object": {
                "id": payment.provider_payment_id,
                "object": "checkout.session",
                "currency": "usd",
                "amount_total": payment.amount // 10_000,
                "payment_status": "paid",
                "client_reference_id": payment.public_id,
                "metadata": {
                    "payment_id": payment.public_id,
                    "account_id": payment.account.public_id,
                },
                **session,
            }
        },
    }


@pytest.fixture
def stripe_http(settings, monkeypatch):
    settings.BYTESPIKE_PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    settings.STRIPE_WEBHOOK_SECRET = WHSEC
    fake = FakeStripeHttp()
    original = StripeProvider.__init__

    def with_fake(self, **kwargs):
        original(self, **kwargs, http_client=fake)

    monkeypatch.setattr(StripeProvider, "__init__", with_fake)
    return fake


def test_stripe_checkout_is_created_for_the_amount_in_cents_with_our_ids(world, stripe_http):
    payment, url = topups.payment_start(
        account=world.account, actor=world.owner, amount=1250 * 10_000, site=SITE
    )
    assert url == "https://checkout.stripe.com/c/pay/cs_test_a1b2c3"
    assert payment.provider == "stripe" and payment.provider_payment_id == "cs_test_a1b2c3"
    ((method, address, headers, body),) = stripe_http.requests
    assert (method, address) == ("post", "https://api.stripe.com/v1/checkout/sessions")
    assert headers["Authorization"] == "Bearer sk_test_fake"
    assert headers["Idempotency-Key"] == f"checkout-{payment.public_id}"
    from urllib.parse import parse_qs

    form = {name: values[0] for name, values in parse_qs(body).items()}
    assert form["mode"] == "payment"
    assert form["line_items[0][price_data][unit_amount]"] == "1250"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["client_reference_id"] == payment.public_id
    assert form["metadata[account_id]"] == world.account.public_id
    assert form["success_url"] == f"{SITE}/wallet/top-up/{payment.public_id}/"
    assert form["customer_email"] == world.owner.email


def test_a_stripe_refusal_fails_the_payment_with_stripes_words(world, stripe_http):
    stripe_http.status = 400
    stripe_http.answer = {
        "error": {"type": "invalid_request_error", "message": "Amount must be at least $0.50 usd"}
    }
    with pytest.raises(PaymentError, match=r"could not be started: Amount must be at least"):
        start(world)
    assert Payment.objects.get().status == "failed"


def test_a_stripe_completed_session_credits_once_through_the_webhook(world, client, stripe_http):
    payment = start(world, 30 * M)
    body, headers = stripe_signed(session_event(payment))
    first = deliver(client, body, headers, provider="stripe")
    second = deliver(client, body, headers, provider="stripe")
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["credited"], second.json()["credited"]) == (True, False)
    assert balance(world) == 30 * M
    assert LedgerEntry.objects.get(kind="topup").reference == "cs_test_a1b2c3"


def test_stripe_webhooks_with_a_bad_signature_are_400(world, client, stripe_http):
    payment = start(world)
    body, headers = stripe_signed(session_event(payment), secret="whsec_someone_else")
    response = deliver(client, body, headers, provider="stripe")
    assert (response.status_code, response.json()["error"]) == (
        400,
        "The signature does not match.",
    )
    assert deliver(client, body, {}, provider="stripe").status_code == 400
    assert balance(world) == 0


def test_stripe_events_of_no_interest_are_acknowledged_and_ignored(world, client, stripe_http):
    payment = start(world)
    unpaid = session_event(payment, payment_status="unpaid")  # a bank debit, not settled yet
    other = {"id": "evt_2", "object": "event", "type": "invoice.paid", "data": {"object": {}}}
    for event in (unpaid, other):
        body, headers = stripe_signed(event)
        response = deliver(client, body, headers, provider="stripe")
        assert response.json() == {"received": True, "ignored": True}
    assert Payment.objects.get().status == "pending"
    body, headers = stripe_signed(
        session_event(payment, "checkout.session.async_payment_succeeded")
    )
    assert deliver(client, body, headers, provider="stripe").json()["credited"] is True
    assert balance(world) == 25 * M


def test_an_expired_stripe_session_fails_the_payment(world, stripe_http):
    payment = start(world)
    body, headers = stripe_signed(session_event(payment, "checkout.session.expired"))
    outcome = topups.payment_webhook_receive(provider_name="stripe", payload=body, headers=headers)
    assert (outcome.payment.status, outcome.payment.failure) == ("failed", "The checkout expired.")


def test_stripe_checkout_refuses_fractions_of_a_cent():
    provider = StripeProvider(api_key="sk_test_fake", webhook_secret=WHSEC, http_client=None)
    request = CheckoutRequest("pay_x", "acct_x", 5 * M + 1, "", SITE, SITE)
    with pytest.raises(PaymentError, match="whole cents"):
        provider.checkout_create(request)


# --- Pages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_owners_and_admins_start_a_sandbox_top_up_and_pay_it(world, client_for, role):
    client = client_for(world.member(role))
    page = client.get(reverse("billing:top-up"))
    assert page.status_code == 200
    assert "Continue to payment" in page.text and "Sandbox payments" in page.text
    started = client.post(reverse("billing:top-up"), {"amount": "12.5"})
    payment = Payment.objects.get()
    assert started.status_code == 302
    assert started["Location"] == reverse("billing:sandbox-checkout", args=[payment.public_id])
    checkout = client.get(started["Location"])
    assert "Pay 12.50" in checkout.text
    paid = client.post(started["Location"], {"outcome": "pay"})
    assert paid["Location"] == reverse("billing:payment", args=[payment.public_id])
    shown = client.get(paid["Location"]).text
    assert "Paid. 12.50 credits were added to the wallet" in shown
    assert "hx-trigger" not in shown  # terminal: no polling
    wallet = client.get(reverse("billing:wallet")).text
    assert "Payment " + payment.public_id in wallet and "+12.50" in wallet


def test_a_declined_sandbox_payment_adds_nothing_and_offers_to_try_again(world, client_for):
    client = client_for(world.owner)
    client.post(reverse("billing:top-up"), {"amount": "10"})
    payment = Payment.objects.get()
    client.post(
        reverse("billing:sandbox-checkout", args=[payment.public_id]), {"outcome": "decline"}
    )
    shown = client.get(reverse("billing:payment", args=[payment.public_id])).text
    assert "Not paid: Declined in the sandbox. No credits were added." in shown
    assert "Try again" in shown and balance(world) == 0


def test_leaving_the_checkout_marks_the_payment_cancelled(world, client_for):
    client = client_for(world.owner)
    client.post(reverse("billing:top-up"), {"amount": "10"})
    payment = Payment.objects.get()
    shown = client.get(reverse("billing:payment", args=[payment.public_id]) + "?cancelled=1").text
    assert "Cancelled at the checkout." in shown
    # the sandbox checkout of a finished payment sends back to the payment
    response = client.post(
        reverse("billing:sandbox-checkout", args=[payment.public_id]), {"outcome": "pay"}
    )
    assert response["Location"] == reverse("billing:payment", args=[payment.public_id])
    assert balance(world) == 0


def test_a_pending_payment_polls_until_it_is_paid_then_stops(world, client_for):
    client = client_for(world.owner)
    payment = start(world)
    url = reverse("billing:payment", args=[payment.public_id])
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "payment-status"}
    pending = client.get(url, **headers)
    assert pending.status_code == 200 and 'hx-trigger="every 2s"' in pending.text
    body, signed = sandbox_event(payment)
    topups.payment_webhook_receive(provider_name="sandbox", payload=body, headers=signed)
    done = client.get(url, **headers)
    assert done.status_code == 286 and "hx-trigger" not in done.text
    assert "Paid." in done.text


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        ("", "This field is required."),
        ("abc", "Enter an amount in credits, like 12.5."),
        ("0", "The amount must be more than zero."),
        ("4.99", "Top up between 5.00 and 10,000.00 credits."),
        ("20000", "Top up between 5.00 and 10,000.00 credits."),
        ("10.001", "Top up in whole cents: at most two decimals."),
    ],
)
def test_bad_amounts_are_refused_under_the_field(world, client_for, amount, error):
    response = client_for(world.owner).post(reverse("billing:top-up"), {"amount": amount})
    assert response.status_code == 422
    assert error in text_of(response.text)
    assert not Payment.objects.exists()


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_other_roles_see_the_page_read_only_and_cannot_pay(world, client_for, role):
    payment = start(world)
    client = client_for(world.member(role))
    page = client.get(reverse("billing:top-up"))
    assert page.status_code == 200
    assert "Only owners and admins can add credits." in page.text
    assert "Continue to payment" not in page.text
    assert payment.public_id in page.text  # the account's payments are readable
    assert client.post(reverse("billing:top-up"), {"amount": "10"}).status_code == 403
    checkout = reverse("billing:sandbox-checkout", args=[payment.public_id])
    assert client.post(checkout, {"outcome": "pay"}).status_code == 403
    assert balance(world) == 0


def test_another_accounts_payment_is_a_404(world, client_for):
    payment = start(world)
    client = client_for(world.outsider)
    assert client.get(reverse("billing:payment", args=[payment.public_id])).status_code == 404
    checkout = reverse("billing:sandbox-checkout", args=[payment.public_id])
    assert client.post(checkout, {"outcome": "pay"}).status_code == 404
    assert payment.public_id not in client.get(reverse("billing:top-up")).text
    assert balance(world) == 0


def test_without_a_provider_the_page_says_payments_are_not_set_up(world, client_for, settings):
    settings.BYTESPIKE_PAYMENT_PROVIDER = "none"
    client = client_for(world.owner)
    page = client.get(reverse("billing:top-up"))
    assert "Payments are not set up" in page.text and "Continue to payment" not in page.text
    response = client.post(reverse("billing:top-up"), {"amount": "10"})
    assert response.status_code == 422
    assert "This ByteSpike takes no payments yet." in response.text
    assert not Payment.objects.exists()


@pytest.mark.parametrize("role", list(Role))
def test_the_dashboard_offers_a_top_up_to_those_who_may(world, client_for, role):
    html = client_for(world.member(role)).get(reverse("console:dashboard")).text
    link = f'href="{reverse("billing:top-up")}"'
    assert (link in html) == (role in (Role.OWNER, Role.ADMIN, Role.FINANCE))


def test_the_wallet_and_the_low_balance_banner_link_to_the_top_up_page(world, client_for):
    Wallet.objects.filter(account=world.account).update(low_balance_threshold=5 * M)
    html = client_for(world.viewer).get(reverse("billing:wallet")).text
    assert html.count(f'href="{reverse("billing:top-up")}"') == 2  # the page action and banner


# --- Runway ------------------------------------------------------------------------------------


def test_runway_is_the_days_the_balance_lasts_at_the_last_weeks_spend(world, client_for):
    group = RoutingGroupFactory(slug="default", name="Default")
    model = AIModelFactory(slug="gpt-4.1", display_name="GPT-4.1", groups=[group])
    client = client_for(world.owner)
    fund(world.account, 100)
    assert "No spend in the last 7 days." in client.get(reverse("billing:top-up")).text
    key, _ = issue_key(world.account, group)
    bill(key, model, 7 * M, at=timezone.now() - timedelta(days=2))  # 1 credit a day
    bill(key, model, 30 * M, at=timezone.now() - timedelta(days=20))  # outside the week
    # 63 left at 1 a day
    assert "About 63 days at the last 7 days' spend." in client.get(reverse("billing:top-up")).text
    wallet = client.get(reverse("billing:wallet")).text
    assert "About 63 days at the last 7 days' spend." in text_of(wallet)
    bill(key, model, 60 * M)  # 3 left at 67/7 a day
    assert (
        "Less than a day at the last 7 days' spend." in client.get(reverse("billing:top-up")).text
    )
