"""Stripe Checkout: a hosted payment page per top-up, and its webhook.

A top-up is a Checkout Session in ``payment`` mode for one line, "ByteSpike credits", priced in
US cents (1 credit = 1 USD), carrying our payment id as ``client_reference_id`` and the account
and payment ids in ``metadata``. The webhook is verified with ``stripe.Webhook.construct_event``
(the ``Stripe-Signature`` header, ``STRIPE_WEBHOOK_SECRET``); of its events, these matter:

- ``checkout.session.completed`` with ``payment_status == "paid"`` (cards): paid;
- ``checkout.session.async_payment_succeeded`` (bank debits, later): paid;
- ``checkout.session.async_payment_failed`` and ``checkout.session.expired``: failed.

Everything else is acknowledged and ignored.
"""

import stripe

from billing.payments import (
    Checkout,
    CheckoutRequest,
    PaymentError,
    PaymentEvent,
    WebhookError,
)

CURRENCY = "usd"
MICROS_PER_CENT = 10_000
SIGNATURE_HEADER = "Stripe-Signature"
PRODUCT_NAME = "ByteSpike credits"


class StripeProvider:
    name = "stripe"
    label = "Card (Stripe)"

    def __init__(self, *, api_key: str, webhook_secret: str, http_client=None):
        self.webhook_secret = webhook_secret
        # max_network_retries: Stripe makes a create with an idempotency key safe to retry.
        self.client = stripe.StripeClient(api_key, http_client=http_client, max_network_retries=2)

    def checkout_create(self, request: CheckoutRequest) -> Checkout:
        if request.amount % MICROS_PER_CENT:
            raise PaymentError("Card payments are in whole cents.")
        metadata = {"payment_id": request.payment_id, "account_id": request.account_id}
        try:
            session = self.client.v1.checkout.sessions.create(
                params={
                    "mode": "payment",
                    "client_reference_id": request.payment_id,
                    "customer_email": request.email or None,
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": CURRENCY,
                                "unit_amount": request.amount // MICROS_PER_CENT,
                                "product_data": {"name": PRODUCT_NAME},
                            },
                        }
                    ],
                    "metadata": metadata,
                    "payment_intent_data": {"metadata": metadata},
                    "success_url": request.success_url,
                    "cancel_url": request.cancel_url,
                },
                # One session per payment row, however often this is retried.
                options={"idempotency_key": f"checkout-{request.payment_id}"},
            )
        except stripe.StripeError as error:
            message = getattr(error, "user_message", None) or "Stripe did not answer."
            raise PaymentError(f"The payment could not be started: {message}") from error
        return Checkout(provider_payment_id=session.id, url=session.url)

    def event_parse(self, payload: bytes, headers) -> PaymentEvent | None:
        header = headers.get(SIGNATURE_HEADER) or ""
        if not header:
            raise WebhookError(f"The {SIGNATURE_HEADER} header is missing.")
        try:
            # Plain dicts: stripe-python's objects are not mappings (no .get).
            event = stripe.Webhook.construct_event(payload, header, self.webhook_secret).to_dict()
        except stripe.SignatureVerificationError:
            raise WebhookError("The signature does not match.") from None
        except ValueError:
            raise WebhookError("The event is not JSON.") from None
        kind = event["type"]
        if not kind.startswith("checkout.session."):
            return None
        session = event["data"]["object"]
        metadata = session.get("metadata") or {}
        if session.get("currency") != CURRENCY or not metadata.get("payment_id"):
            return None  # not a ByteSpike top-up (another integration on the same account)
        parsed = dict(
            provider_payment_id=session["id"],
            payment_id=metadata["payment_id"],
            account_id=metadata.get("account_id", ""),
            amount=int(session.get("amount_total") or 0) * MICROS_PER_CENT,
        )
        if kind == "checkout.session.async_payment_succeeded" or (
            kind == "checkout.session.completed" and session.get("payment_status") == "paid"
        ):
            return PaymentEvent(**parsed, status="paid")
        if kind == "checkout.session.async_payment_failed":
            return PaymentEvent(**parsed, status="failed", failure="The payment failed.")
        if kind == "checkout.session.expired":
            return PaymentEvent(**parsed, status="failed", failure="The checkout expired.")
        return None
