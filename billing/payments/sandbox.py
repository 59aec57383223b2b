"""The offline payment provider of the embedded default.

Its checkout is a page of ByteSpike's own (``billing:sandbox-checkout``) where the payer
confirms or declines; that page builds an event shaped like a provider's webhook, signs it with
the local secret (``BYTESPIKE_SANDBOX_PAYMENT_SECRET``) and hands it to the same handler the
webhook endpoint uses, so verification, parsing and the one-time credit run for real. No money
moves: anyone who can top up gets credits for nothing, which is why it is not the default once
a DATABASE_URL is set.

The signature follows Stripe's scheme: header ``ByteSpike-Sandbox-Signature: t=<unix>,v1=<hex>``
where v1 is HMAC-SHA256 of ``"<t>.<body>"``; events older than five minutes are refused.
"""

import hashlib
import hmac
import json
import secrets
import time

from django.urls import reverse

from billing.payments import Checkout, CheckoutRequest, PaymentEvent, WebhookError

SIGNATURE_HEADER = "ByteSpike-Sandbox-Signature"
TOLERANCE_SECONDS = 300
EVENT_PAID = "payment.succeeded"
EVENT_FAILED = "payment.failed"


def sign(payload: bytes, secret: str, *, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


class SandboxProvider:
    name = "sandbox"
    label = "Sandbox (no real payment)"

    def __init__(self, *, secret: str):
        self.secret = secret

    def checkout_create(self, request: CheckoutRequest) -> Checkout:
        return Checkout(
            provider_payment_id=f"sbx_{secrets.token_hex(12)}",
            url=reverse("billing:sandbox-checkout", args=[request.payment_id]),
        )

    def event_build(
        self, *, provider_payment_id: str, payment_id: str, account_id: str, amount: int, paid: bool
    ) -> tuple[bytes, dict[str, str]]:
        """A signed event, as the webhook endpoint receives it: body and headers."""
        body = json.dumps(
            {
                "id": f"evt_{secrets.token_hex(12)}",
                "type": EVENT_PAID if paid else EVENT_FAILED,
                "data": {
                    "id": provider_payment_id,
                    "payment_id": payment_id,
                    "account_id": account_id,
                    "amount": amount,
                },
            }
        ).encode()
        return body, {SIGNATURE_HEADER: sign(body, self.secret)}

    def _verify(self, payload: bytes, header: str) -> None:
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        try:
            at = int(parts.get("t", ""))
        except ValueError:
            raise WebhookError("The signature header has no timestamp.") from None
        if abs(time.time() - at) > TOLERANCE_SECONDS:
            raise WebhookError("The event is too old (or from the future).")
        expected = sign(payload, self.secret, at=at).split("v1=", 1)[1]
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            raise WebhookError("The signature does not match.")

    def event_parse(self, payload: bytes, headers) -> PaymentEvent | None:
        header = headers.get(SIGNATURE_HEADER) or ""
        if not header:
            raise WebhookError(f"The {SIGNATURE_HEADER} header is missing.")
        self._verify(payload, header)
        try:
            event = json.loads(payload)
            data = event["data"]
            kind = event["type"]
            parsed = dict(
                provider_payment_id=str(data["id"]),
                payment_id=str(data["payment_id"]),
                account_id=str(data["account_id"]),
                amount=int(data["amount"]),
            )
        except (ValueError, KeyError, TypeError):
            raise WebhookError("The event is not a sandbox payment event.") from None
        if kind == EVENT_PAID:
            return PaymentEvent(**parsed, status="paid")
        if kind == EVENT_FAILED:
            return PaymentEvent(**parsed, status="failed", failure="Declined in the sandbox.")
        return None
