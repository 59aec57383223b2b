"""Console pages for buying credits: the top-up page, a payment's own page (where the provider
sends the payer back, live until the webhook lands), the sandbox provider's checkout page, and
the providers' webhook endpoint. The money moves in billing/topups.py."""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import permissions
from accounts.decorators import account_view
from billing import topups
from billing.errors import BillingError
from billing.forms import TopUpForm
from billing.models import PaymentStatus
from billing.payments import PaymentsOffError, WebhookError, payments_enabled, provider_named
from billing.reports import runway_days
from billing.selectors import payment_get_for_account, payments_for_account, wallet_of
from core.money import credits_text

logger = logging.getLogger(__name__)

HTMX_STOP_POLLING = 286
PRESETS = (10, 25, 50, 100)


def _top_up_context(request, **extra) -> dict:
    wallet = wallet_of(request.account)
    name = settings.BYTESPIKE_PAYMENT_PROVIDER
    low, high = topups.top_up_bounds()
    presets = [amount for amount in PRESETS if low <= amount * 1_000_000 <= high]
    return {
        "wallet": wallet,
        "runway": runway_days(request.account, wallet.available),
        "can_top_up": request.membership.can(permissions.TOP_UP),
        "provider": provider_named(name) if payments_enabled() else None,
        "form": TopUpForm(initial={"amount": str(presets[1] if len(presets) > 1 else "")}),
        "presets": presets,
        "minimum": low,
        "maximum": high,
        "payments": payments_for_account(request.account),
        **extra,
    }


@require_http_methods(["GET", "POST"])
@account_view()
def top_up(request):
    if request.method == "GET":
        return render(request, "billing/top_up.html", _top_up_context(request))
    if not request.membership.can(permissions.TOP_UP):
        raise PermissionDenied("Only owners and admins can add credits.")
    form = TopUpForm(request.POST)
    if form.is_valid():
        try:
            _, url = topups.payment_start(
                account=request.account,
                actor=request.user,
                amount=form.cleaned_data["amount"],
                site=request.build_absolute_uri("/").rstrip("/"),
            )
        except BillingError as error:
            form.add_error(None, error.message)
        else:
            return redirect(url)
    return render(request, "billing/top_up.html", _top_up_context(request, form=form), status=422)


def _payment_context(request, payment) -> dict:
    wallet = wallet_of(request.account)
    return {
        "payment": payment,
        "wallet": wallet,
        "runway": runway_days(request.account, wallet.available),
        "retry_amount": credits_text(payment.amount),
        "can_top_up": request.membership.can(permissions.TOP_UP),
    }


@require_GET
@account_view()
def payment(request, payment_id: str):
    """Where the checkout sends the payer back. Pending until the webhook lands: the status
    card polls, and stops (286) once the payment is paid or failed."""
    found = payment_get_for_account(account=request.account, public_id=payment_id)
    cancelled = request.GET.get("cancelled") and request.membership.can(permissions.TOP_UP)
    if cancelled and topups.payment_cancel(payment=found):
        found.refresh_from_db()
    context = _payment_context(request, found)
    if request.htmx and request.htmx.target == "payment-status":
        status = HTMX_STOP_POLLING if found.is_terminal else 200
        return render(request, "billing/payment.html#payment-status", context, status=status)
    return render(request, "billing/payment.html", context)


@require_http_methods(["GET", "POST"])
@account_view(permissions.TOP_UP)
def sandbox_checkout(request, payment_id: str):
    """The sandbox provider's checkout: confirm or decline, no card. Its answer is a signed
    event handed to the webhook's own handler."""
    found = payment_get_for_account(account=request.account, public_id=payment_id)
    if found.provider != "sandbox" or found.status != PaymentStatus.PENDING:
        return redirect("billing:payment", payment_id=found.public_id)
    if request.method == "POST":
        try:
            topups.sandbox_payment_complete(
                payment=found, paid=request.POST.get("outcome") != "decline"
            )
        except BillingError as error:
            return render(
                request,
                "billing/sandbox_checkout.html",
                {"payment": found, "error": error.message},
                status=422,
            )
        return redirect("billing:payment", payment_id=found.public_id)
    return render(request, "billing/sandbox_checkout.html", {"payment": found})


@csrf_exempt
@require_POST
def payment_webhook(request, provider: str):
    """A payment provider's webhook: 400 for a bad signature or an event that matches no
    payment (the provider retries, and its dashboard shows it), 200 for everything verified,
    duplicates included."""
    try:
        outcome = topups.payment_webhook_receive(
            provider_name=provider, payload=request.body, headers=request.headers
        )
    except PaymentsOffError as error:
        return JsonResponse({"error": error.message}, status=404)
    except WebhookError as error:
        logger.warning("%s webhook refused: %s", provider, error.message)
        return JsonResponse({"error": error.message}, status=400)
    if outcome.ignored:
        return JsonResponse({"received": True, "ignored": True})
    return JsonResponse(
        {
            "received": True,
            "payment": outcome.payment.public_id,
            "status": outcome.payment.status,
            "credited": outcome.credited,
        }
    )
