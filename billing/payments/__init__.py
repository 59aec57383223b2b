"""Payment providers: the edge between top-ups and whoever takes the money.

A provider does two things: create a checkout for an amount (where to send the payer), and
verify and read a webhook (which payment, for which account, how much, paid or failed). It knows
nothing of the ORM: billing/topups.py keeps the intent row and credits the wallet.

``BYTESPIKE_PAYMENT_PROVIDER`` picks one: ``stripe`` (Stripe Checkout), ``sandbox`` (offline, our
own checkout page) or ``none``. See docs/payments.md.
"""

from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from billing.errors import BillingError


class PaymentError(BillingError):
    """The provider refused or could not be reached; nothing was charged."""

    status = 502
    code = "payment_provider_error"


class WebhookError(BillingError):
    """A webhook that is not the provider's (bad or missing signature) or cannot be read."""

    status = 400
    code = "invalid_webhook"


class PaymentsOffError(BillingError):
    status = 404
    code = "payments_off"


@dataclass(frozen=True)
class CheckoutRequest:
    payment_id: str  # our public id, pay_...
    account_id: str  # the account's public id
    amount: int  # micro-credits, whole cents
    email: str  # the payer's, for the provider's own receipt and form
    success_url: str
    cancel_url: str


@dataclass(frozen=True)
class Checkout:
    provider_payment_id: str
    url: str  # where to send the payer


@dataclass(frozen=True)
class PaymentEvent:
    """What a verified webhook says about one payment."""

    provider_payment_id: str
    payment_id: str  # our public id, as we gave it to the checkout
    account_id: str
    amount: int  # micro-credits actually paid
    status: str  # "paid" or "failed"
    failure: str = ""


class PaymentProvider(Protocol):
    name: str
    label: str

    def checkout_create(self, request: CheckoutRequest) -> Checkout: ...

    def event_parse(self, payload: bytes, headers) -> PaymentEvent | None:
        """The event a verified webhook carries; None for an event of no interest. Raises
        WebhookError when the signature does not verify."""
        ...


def provider_named(name: str) -> PaymentProvider:
    if name == "sandbox":
        from billing.payments.sandbox import SandboxProvider

        return SandboxProvider(secret=settings.BYTESPIKE_SANDBOX_PAYMENT_SECRET)
    if name == "stripe":
        from billing.payments.stripe import StripeProvider

        return StripeProvider(
            api_key=settings.STRIPE_SECRET_KEY, webhook_secret=settings.STRIPE_WEBHOOK_SECRET
        )
    raise PaymentsOffError("Payments are not set up on this ByteSpike.")


def provider_current() -> PaymentProvider:
    """The configured provider; PaymentsOffError when there is none."""
    return provider_named(settings.BYTESPIKE_PAYMENT_PROVIDER)


def payments_enabled() -> bool:
    return settings.BYTESPIKE_PAYMENT_PROVIDER in {"sandbox", "stripe"}
