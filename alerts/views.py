"""The console's alerts page: notification channels (add, edit, disable, delete, send a test
alert), rules (add, edit, disable, delete) and the history of fired alerts with their
deliveries.

Owners and admins only (MANAGE_ALERTS): channels hold addresses and webhook URLs, and a test
alert sends mail or requests on the account's behalf, so the read-only roles get a 403 like on
the webhooks page. A webhook channel's secret is rendered once, in the response that created or
rotated it (``no-store``).
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event

from accounts.decorators import account_view
from accounts.permissions import MANAGE_ALERTS
from alerts import services
from alerts.delivery import TargetError
from alerts.forms import ChannelForm, RuleForm
from alerts.models import AlertRule, ChannelKind, NotificationChannel, RuleKind
from alerts.selectors import (
    alerts_for_account,
    channel_get_for_account,
    channels_for_account,
    delivery_get_for_account,
    rule_get_for_account,
    rules_for_account,
)
from core.delivery import DeliveryStatus
from core.money import format_credits
from keys.selectors import api_keys_for_account

PAGE = "alerts/alerts.html"
CHANNEL_EDIT = "alerts/channel_edit.html"
RULE_EDIT = "alerts/rule_edit.html"
HISTORY_PAGE_SIZE = 20
# htmx stops polling on this status (docs/architecture.md).
STOP_POLLING = 286


# --- Presenters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelRow:
    channel: NotificationChannel
    shown_target: str  # a Slack URL is a credential: only its host and last characters


def shown_target(channel: NotificationChannel) -> str:
    if channel.kind == ChannelKind.SLACK:
        host = urlsplit(channel.target).hostname or ""
        return f"{host}/…{channel.target[-4:]}"
    return channel.target


@dataclass(frozen=True)
class RuleRow:
    rule: AlertRule
    condition: str


def rule_condition(rule: AlertRule) -> str:
    """The rule in words, as the page lists it."""
    if rule.kind == RuleKind.BALANCE_BELOW:
        return f"Available balance below {format_credits(rule.threshold)} credits"
    if rule.kind == RuleKind.MONTHLY_SPEND:
        zone = rule.account.time_zone  # the months the rule counts in (alerts/evaluation.py)
        amount = format_credits(rule.threshold)
        return f"Spend in a calendar month ({zone}) reaches {amount} credits"
    if rule.kind == RuleKind.KEY_QUOTA:
        which = f"Key {rule.api_key.name}" if rule.api_key else "Any key"
        return f"{which} at 80% and 100% of its quota or a cap"
    return f"{rule.streak} task callbacks in a row fail"


# --- Context -----------------------------------------------------------------------------------


def _rule_form(account, data=None, rule=None) -> RuleForm:
    return RuleForm(
        data,
        keys=list(api_keys_for_account(account).order_by("name", "pk")),
        channels=list(channels_for_account(account)),
        rule=rule,
    )


def _channels_context(request, **extra) -> dict:
    return {
        "channel_rows": [
            ChannelRow(channel, shown_target(channel))
            for channel in channels_for_account(request.account)
        ],
        "channel_form": ChannelForm(),
        **extra,
    }


def _rules_context(request, **extra) -> dict:
    return {
        "rule_rows": [
            RuleRow(rule, rule_condition(rule)) for rule in rules_for_account(request.account)
        ],
        "rule_form": _rule_form(request.account),
        "has_channels": channels_for_account(request.account).exists(),
        **extra,
    }


def _history_context(request) -> dict:
    page = Paginator(alerts_for_account(request.account), HISTORY_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    base = reverse("alerts:alerts")
    return {
        "history": page,
        "previous_url": f"{base}?page={page.previous_page_number()}" if page.has_previous() else "",
        "next_url": f"{base}?page={page.next_page_number()}" if page.has_next() else "",
    }


# --- The page ----------------------------------------------------------------------------------


@require_GET
@account_view(MANAGE_ALERTS)
def alerts(request):
    if request.htmx and request.htmx.target == "alert-history":
        return render(request, f"{PAGE}#alert-history", _history_context(request))
    context = {**_channels_context(request), **_rules_context(request), **_history_context(request)}
    return render(request, PAGE, context)


def _channels_changed(request, status: int = 200, **extra) -> HttpResponse:
    """The channels card (and the rules card, whose channel choices follow), or the page."""
    if not request.htmx:
        if status == 200:
            return redirect("alerts:alerts")
        context = {**_channels_context(request, **extra), **_rules_context(request)}
        return render(request, PAGE, {**context, **_history_context(request)}, status=status)
    response = render(request, f"{PAGE}#channels-changed", {
        **_channels_context(request, **extra), **_rules_context(request),
    }, status=status)  # fmt: skip
    return response


# --- Channels ----------------------------------------------------------------------------------


@require_POST
@account_view(MANAGE_ALERTS)
def channel_create(request):
    form = ChannelForm(request.POST)
    if form.is_valid():
        try:
            channel, secret = services.channel_create(
                account=request.account, actor=request.user, kind=form.cleaned_data["kind"],
                name=form.cleaned_data["name"], target=form.cleaned_data["target"],
            )  # fmt: skip
        except TargetError as error:
            form.add_error("target", str(error))
        else:
            if secret and not request.htmx:
                # The secret must be seen once: the page itself, not a redirect.
                response = render(request, PAGE, {
                    **_channels_context(request, secret=secret, secret_channel=channel),
                    **_rules_context(request), **_history_context(request),
                })  # fmt: skip
            else:
                if not request.htmx:
                    messages.success(request, f"Channel {channel.name} added.")
                response = _channels_changed(
                    request, secret=secret, secret_channel=channel,
                    channel_notice=f"Channel {channel.name} added.",
                )  # fmt: skip
            add_never_cache_headers(response)
            return response
    return _channels_changed(request, status=422, channel_form=form)


@require_http_methods(["GET", "POST"])
@account_view(MANAGE_ALERTS)
def channel_edit(request, public_id: str):
    channel = channel_get_for_account(account=request.account, public_id=public_id)
    form = ChannelForm(request.POST or None, channel=channel)
    if request.method == "POST" and form.is_valid():
        try:
            services.channel_update(
                channel=channel, actor=request.user, name=form.cleaned_data["name"],
                target=form.cleaned_data["target"], enabled=form.cleaned_data["enabled"],
            )  # fmt: skip
        except TargetError as error:
            form.add_error("target", str(error))
        else:
            messages.success(request, f"Channel {channel.name} saved.")
            if request.htmx:
                return HttpResponseClientRedirect(reverse("alerts:alerts"))
            return redirect("alerts:alerts")
    status = 422 if form.errors else 200
    template = f"{CHANNEL_EDIT}#channel-form" if request.htmx else CHANNEL_EDIT
    return render(request, template, {"channel": channel, "form": form}, status=status)


@require_POST
@account_view(MANAGE_ALERTS)
def channel_delete(request, public_id: str):
    channel = channel_get_for_account(account=request.account, public_id=public_id)
    name = channel.name
    services.channel_delete(channel=channel, actor=request.user)
    if not request.htmx:
        messages.success(request, f"Channel {name} deleted.")
    return _channels_changed(request, channel_notice=f"Channel {name} deleted.")


@require_POST
@account_view(MANAGE_ALERTS)
def channel_rotate(request, public_id: str):
    channel = channel_get_for_account(account=request.account, public_id=public_id)
    if channel.kind != ChannelKind.WEBHOOK:
        return HttpResponse("Only webhook channels have a signing secret.", status=400)
    secret = services.channel_secret_rotate(channel=channel, actor=request.user)
    if request.htmx:
        response = _channels_changed(request, secret=secret, secret_channel=channel)
    else:
        response = render(request, PAGE, {
            **_channels_context(request, secret=secret, secret_channel=channel),
            **_rules_context(request), **_history_context(request),
        })  # fmt: skip
    add_never_cache_headers(response)
    return response


def _test_result(request, delivery, status: int = 200) -> HttpResponse:
    finished = delivery.attempts > 0 or delivery.status != DeliveryStatus.PENDING
    response = render(
        request,
        f"{PAGE}#test-result",
        {"delivery": delivery, "finished": finished, "channel_id": delivery.channel.public_id
         if delivery.channel else ""},
        status=STOP_POLLING if finished and request.htmx and request.method == "GET" else status,
    )  # fmt: skip
    return response


@require_POST
@account_view(MANAGE_ALERTS)
def channel_test(request, public_id: str):
    """Queue a test alert to the channel; the answer shows its delivery, which polls itself
    until the first attempt's outcome is known."""
    channel = channel_get_for_account(account=request.account, public_id=public_id)
    try:
        delivery = services.channel_test(channel=channel, actor=request.user)
    except services.TestAlertLimitError as error:
        if not request.htmx:
            messages.error(request, error.message)
            return redirect("alerts:alerts")
        return render(
            request, f"{PAGE}#test-refused", {"channel_id": channel.public_id, "error": error},
            status=422,  # swapped in, like a form's refusal (htmx leaves a 429 alone)
        )  # fmt: skip
    if not request.htmx:
        messages.success(request, f"Test alert queued for {channel.name}.")
        return redirect("alerts:alerts")
    response = _test_result(request, delivery)
    return trigger_client_event(response, "announce", {"message": "Test alert queued."})


@require_GET
@account_view(MANAGE_ALERTS)
def delivery_status(request, webhook_id: str):
    delivery = delivery_get_for_account(account=request.account, webhook_id=webhook_id)
    return _test_result(request, delivery)


# --- Rules -------------------------------------------------------------------------------------


def _rule_values(form: RuleForm) -> dict:
    data = form.cleaned_data
    return {
        "channels": data["channel_objects"],
        "threshold": data.get("threshold"),
        "api_key": data["api_key_object"],
        "streak": data.get("streak"),
        "enabled": data.get("enabled", True),
    }


@require_POST
@account_view(MANAGE_ALERTS)
def rule_create(request):
    form = _rule_form(request.account, request.POST)
    if form.is_valid():
        values = _rule_values(form)
        services.rule_create(
            account=request.account, actor=request.user, kind=form.cleaned_data["kind"], **values
        )
        if not request.htmx:
            messages.success(request, "Rule added.")
            return redirect("alerts:alerts")
        return render(request, f"{PAGE}#rules", _rules_context(request, rule_notice="Rule added."))
    if request.htmx:
        return render(request, f"{PAGE}#rules", _rules_context(request, rule_form=form), status=422)
    context = {**_channels_context(request), **_rules_context(request, rule_form=form)}
    return render(request, PAGE, {**context, **_history_context(request)}, status=422)


@require_http_methods(["GET", "POST"])
@account_view(MANAGE_ALERTS)
def rule_edit(request, public_id: str):
    rule = rule_get_for_account(account=request.account, public_id=public_id)
    form = _rule_form(request.account, request.POST or None, rule=rule)
    if request.method == "POST" and form.is_valid():
        services.rule_update(rule=rule, actor=request.user, **_rule_values(form))
        messages.success(request, "Rule saved.")
        if request.htmx:
            return HttpResponseClientRedirect(reverse("alerts:alerts"))
        return redirect("alerts:alerts")
    status = 422 if form.errors else 200
    context = {"rule": rule, "condition": rule_condition(rule), "form": form}
    template = f"{RULE_EDIT}#rule-form" if request.htmx else RULE_EDIT
    return render(request, template, context, status=status)


@require_POST
@account_view(MANAGE_ALERTS)
def rule_delete(request, public_id: str):
    rule = rule_get_for_account(account=request.account, public_id=public_id)
    services.rule_delete(rule=rule, actor=request.user)
    if not request.htmx:
        messages.success(request, "Rule deleted.")
        return redirect("alerts:alerts")
    return render(request, f"{PAGE}#rules", _rules_context(request, rule_notice="Rule deleted."))
