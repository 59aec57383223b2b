"""Console pages for task callbacks: the signing secret and every delivery with its attempts.

Owners and admins only (MANAGE_WEBHOOKS). The secret is rendered once, in the response to
the request that created or rotated it (marked ``no-store``); every other page shows its hint,
and during a rotation's overlap window the previous secret's hint and when it stops signing.
What a receiver answered is shown as text: templates escape it like any other value.
"""

import json
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from accounts.decorators import account_view
from accounts.permissions import MANAGE_WEBHOOKS
from accounts.webhooks import webhook_rotation_overlap_until, webhook_secret_rotate
from core.delivery import DeliveryStatus
from generation.callbacks.selectors import deliveries_for_account, delivery_get_for_account
from generation.callbacks.services import RedeliveryBusyError, callback_redeliver
from generation.models import CallbackDelivery
from generation.task_pages import seconds_text

PAGE_SIZE = 25
PAGE = "generation/webhooks.html"
DETAIL = "generation/webhook_delivery.html"


def _status_filter(request) -> str:
    status = request.GET.get("status", "")
    return status if status in DeliveryStatus.values else ""


def _url_with(status: str, page: int | None = None) -> str:
    query = {key: value for key, value in (("status", status), ("page", page)) if value}
    return f"?{urlencode(query)}" if query else ""


@dataclass(frozen=True)
class DeliveryRow:
    """A callback delivery as the deliveries table shows it, with the host it was sent to."""

    delivery: CallbackDelivery
    url_host: str


def _delivery_row(delivery: CallbackDelivery) -> DeliveryRow:
    return DeliveryRow(delivery, url_host=urlsplit(delivery.url).hostname or delivery.url)


def _deliveries_context(request) -> dict:
    status = _status_filter(request)
    page = Paginator(
        deliveries_for_account(request.account, status=status or None), PAGE_SIZE
    ).get_page(request.GET.get("page"))

    def page_url(number: int) -> str:
        return reverse("generation:webhooks") + _url_with(status, number)

    return {
        "page": page,
        "rows": [_delivery_row(delivery) for delivery in page],
        "status": status,
        "status_choices": [
            {"label": label, "query": _url_with(value), "active": value == status}
            for value, label in [("", "All"), *DeliveryStatus.choices]
        ],
        "previous_url": page_url(page.previous_page_number()) if page.has_previous() else "",
        "next_url": page_url(page.next_page_number()) if page.has_next() else "",
    }


def _secret_context(request, **extra) -> dict:
    grace = settings.BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS
    return {
        "account": request.account,
        "overlap_until": webhook_rotation_overlap_until(request.account),
        "overlap_length": seconds_text(grace) if grace > 0 else "",
        **extra,
    }


def _page_context(request, **extra) -> dict:
    return _secret_context(request, **_deliveries_context(request), **extra)


@require_GET
@account_view(MANAGE_WEBHOOKS)
def webhooks(request):
    """The signing secret, how to verify a callback, and the deliveries (filtered, paged)."""
    if request.htmx and request.htmx.target == "deliveries":
        return render(request, f"{PAGE}#deliveries", _deliveries_context(request))
    return render(request, PAGE, _page_context(request))


@require_POST
@account_view(MANAGE_WEBHOOKS)
def webhook_secret_rotate_view(request):
    secret = webhook_secret_rotate(account=request.account, actor=request.user)
    if request.htmx:
        response = render(
            request, f"{PAGE}#webhook-secret", _secret_context(request, secret=secret)
        )
        response = trigger_client_event(
            response, "announce", {"message": "New signing secret created."}
        )
    else:
        response = render(request, PAGE, _page_context(request, secret=secret))
    add_never_cache_headers(response)
    return response


def _detail_context(request, delivery: CallbackDelivery, **extra) -> dict:
    context = {
        "delivery": delivery,
        "attempts": list(delivery.attempt_log.all()),
        "payload": json.dumps(delivery.payload, indent=2, ensure_ascii=False),
    }
    context.update(extra)
    return context


@require_GET
@account_view(MANAGE_WEBHOOKS)
def delivery_detail(request, webhook_id: str):
    delivery = delivery_get_for_account(account=request.account, webhook_id=webhook_id)
    return render(request, DETAIL, _detail_context(request, delivery))


@require_POST
@account_view(MANAGE_WEBHOOKS)
def delivery_redeliver(request, webhook_id: str):
    """Send the delivery again now; the page (or its fragment) shows the new attempt."""
    delivery = delivery_get_for_account(account=request.account, webhook_id=webhook_id)
    try:
        attempt = callback_redeliver(delivery, request.user)
    except RedeliveryBusyError as error:
        attempt, error_text = None, str(error)
    else:
        error_text = ""
    sent = attempt is not None and not attempt.error
    notice = "" if attempt is None else "Redelivered." if sent else "Redelivery failed."
    delivery.refresh_from_db()
    if not request.htmx:
        if error_text:
            messages.error(request, error_text)
        elif sent:
            messages.success(request, notice)
        else:
            messages.error(request, f"{notice} See the latest attempt.")
        return redirect("generation:delivery-detail", webhook_id=delivery.webhook_id)
    context = _detail_context(
        request, delivery, notice=notice, notice_ok=sent, redeliver_error=error_text
    )
    response = render(request, f"{DETAIL}#delivery", context, status=422 if error_text else 200)
    return trigger_client_event(response, "announce", {"message": error_text or notice})
