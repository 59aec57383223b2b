"""Top-ups bought through a payment provider (billing/payments/).

The intent row comes first: ``payment_start`` writes a pending ``Payment``, then asks the
provider for a checkout (outside any transaction) and sends the payer there. The provider's
webhook, verified by its adapter, reaches ``payment_webhook_receive``; a paid event turns the row
pending (or failed) -> paid with a conditional UPDATE and credits the wallet through
``wallet_top_up`` with the provider's payment id as reference, in one transaction. A second
delivery, or two at once, finds the row already paid and the ledger's idempotency key taken:
nothing is credited twice. The receipt email is queued after the commit.
"""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account, User
from accounts.services import audit_record
from billing.errors import BillingError
from billing.models import Payment, PaymentStatus
from billing.payments import (
    CheckoutRequest,
    PaymentError,
    PaymentEvent,
    PaymentsOffError,
    WebhookError,
    provider_current,
    provider_named,
)
from billing.services import wallet_top_up
from core.money import MICROS_PER_CREDIT, format_credits

logger = logging.getLogger(__name__)

MICROS_PER_CENT = MICROS_PER_CREDIT // 100


def top_up_bounds() -> tuple[int, int]:
    """The smallest and largest top-up, in micro-credits."""
    return (
        settings.BYTESPIKE_TOP_UP_MIN * MICROS_PER_CREDIT,
        settings.BYTESPIKE_TOP_UP_MAX * MICROS_PER_CREDIT,
    )


def top_up_amount_check(amount: int) -> None:
    low, high = top_up_bounds()
    if amount < low or amount > high:
        raise BillingError(
            f"Top up between {format_credits(low)} and {format_credits(high)} credits."
        )
    if amount % MICROS_PER_CENT:
        raise BillingError("Top up in whole cents: at most two decimals.")


def payment_start(*, account: Account, actor: User, amount: int, site: str) -> tuple[Payment, str]:
    """Write the pending payment, then create its checkout. Returns the payment and where to
    send the payer. ``site`` is the console's origin, for the provider's return links."""
    top_up_amount_check(amount)
    provider = provider_current()
    payment = Payment.objects.create(
        account=account, provider=provider.name, amount=amount, created_by=actor
    )
    back = site + reverse("billing:payment", args=[payment.public_id])
    try:
        checkout = provider.checkout_create(
            CheckoutRequest(
                payment_id=payment.public_id,
                account_id=account.public_id,
                amount=amount,
                email=actor.email,
                success_url=back,
                cancel_url=f"{back}?cancelled=1",
            )
        )
    except PaymentError as error:
        Payment.objects.filter(pk=payment.pk, status=PaymentStatus.PENDING).update(
            status=PaymentStatus.FAILED, failure=error.message[:200]
        )
        raise
    Payment.objects.filter(pk=payment.pk).update(provider_payment_id=checkout.provider_payment_id)
    payment.provider_payment_id = checkout.provider_payment_id
    return payment, checkout.url


def payment_cancel(*, payment: Payment) -> bool:
    """The payer came back from the checkout without paying. A payment the provider later
    reports paid is still credited (a failed payment can turn paid; money taken is never lost)."""
    return bool(
        Payment.objects.filter(pk=payment.pk, status=PaymentStatus.PENDING).update(
            status=PaymentStatus.FAILED, failure="Cancelled at the checkout."
        )
    )


@dataclass(frozen=True)
class EventOutcome:
    payment: Payment | None
    credited: bool  # this delivery added the credits (False for a duplicate)
    ignored: bool = False  # an event of no interest


def payment_event_apply(*, provider_name: str, event: PaymentEvent) -> EventOutcome:
    """Apply a verified event to its payment: once, whatever the deliveries."""
    payment = (
        Payment.objects.select_related("account")
        .filter(public_id=event.payment_id, provider=provider_name)
        .first()
    )
    if payment is None:
        raise WebhookError(f"No {provider_name} payment {event.payment_id} here.")
    if (
        payment.provider_payment_id != event.provider_payment_id
        or payment.account.public_id != event.account_id
    ):
        raise WebhookError(f"The event does not match payment {payment.public_id}.")
    if event.status == PaymentStatus.FAILED:
        Payment.objects.filter(pk=payment.pk, status=PaymentStatus.PENDING).update(
            status=PaymentStatus.FAILED, failure=event.failure[:200]
        )
        payment.refresh_from_db()
        return EventOutcome(payment, credited=False)
    if event.amount != payment.amount:
        logger.error(
            "payment %s: %s reports %d micro-credits paid, %d were asked",
            payment.public_id,
            provider_name,
            event.amount,
            payment.amount,
        )
        raise WebhookError(f"The amount paid does not match payment {payment.public_id}.")
    with transaction.atomic():
        claimed = (
            Payment.objects.filter(pk=payment.pk)
            .exclude(status=PaymentStatus.PAID)
            .update(status=PaymentStatus.PAID, paid_at=timezone.now(), failure="")
        )
        if claimed:
            wallet_top_up(
                account=payment.account,
                amount=payment.amount,
                reference=payment.provider_payment_id,
                actor=payment.created_by,
                description=f"Payment {payment.public_id}",
            )
            audit_record(
                account=payment.account,
                actor=payment.created_by,
                action="wallet.topup",
                target=f"{format_credits(payment.amount)} credits ({payment.public_id})",
                provider=provider_name,
            )
            from billing.jobs import payment_receipt

            payment_receipt.delay_on_commit(payment.pk)
    payment.refresh_from_db()
    return EventOutcome(payment, credited=bool(claimed))


def webhook_provider_accepted(name: str) -> bool:
    """Webhooks are taken for the configured provider, and for Stripe whenever its secrets are
    set (payments started before a switch still land)."""
    if name == settings.BYTESPIKE_PAYMENT_PROVIDER:
        return name in {"sandbox", "stripe"}
    return name == "stripe" and bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_WEBHOOK_SECRET)


def payment_webhook_receive(*, provider_name: str, payload: bytes, headers) -> EventOutcome:
    """Verify, parse and apply one webhook delivery. Raises WebhookError (bad signature, an
    event that matches no payment) and PaymentsOffError (no such provider here)."""
    if not webhook_provider_accepted(provider_name):
        raise PaymentsOffError(f"No {provider_name} payments here.")
    event = provider_named(provider_name).event_parse(payload, headers)
    if event is None:
        return EventOutcome(None, credited=False, ignored=True)
    return payment_event_apply(provider_name=provider_name, event=event)


def sandbox_payment_complete(*, payment: Payment, paid: bool) -> EventOutcome:
    """The sandbox checkout's answer: a signed event, through the webhook's own path."""
    if payment.provider != "sandbox":
        raise BillingError("This payment is not a sandbox payment.")
    provider = provider_named("sandbox")
    body, headers = provider.event_build(
        provider_payment_id=payment.provider_payment_id,
        payment_id=payment.public_id,
        account_id=payment.account.public_id,
        amount=payment.amount,
        paid=paid,
    )
    return payment_webhook_receive(provider_name="sandbox", payload=body, headers=headers)
