"""Management API resources of alerts: an account's notification channels, its rules and the
alerts they fired (docs/alerts.md). Like the console page, and within the calling management
key's account: another account's channel or rule is a 404."""

from datetime import datetime
from typing import Annotated, Literal

from ninja import Field, Query, Router, Schema, Status
from pydantic import StrictInt

from alerts import services
from alerts.delivery import TargetError
from alerts.models import Alert, AlertRule, NotificationChannel, RuleKind
from alerts.selectors import (
    alerts_for_account,
    channel_get_for_account,
    channels_for_account,
    rule_get_for_account,
    rules_for_account,
)
from alerts.views import shown_target
from core.api import DEFAULT_PAGE_SIZE, MAX_PAGE, MAX_PAGE_SIZE, CreditsOut, credits_in
from core.errors import ApiError
from core.money import credits_json
from keys.selectors import api_keys_for_account

router = Router()

TAGS = ["alerts"]


Credits = credits_in(allow_zero=False)
Streak = Annotated[StrictInt, Field(ge=1, le=1000)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Target = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2000,
        description="Email: addresses, comma separated (at most 10). Webhook: a public https "
        "URL. Slack: an incoming webhook URL (https://hooks.slack.com/services/...).",
    ),
]


def _invalid(message: str, param: str) -> ApiError:
    return ApiError(400, "invalid_param", message, param)


# --- Channels --------------------------------------------------------------------------------


class ChannelOut(Schema):
    id: str
    kind: Literal["email", "webhook", "slack"]
    name: str
    target: str = Field(description="A Slack URL is masked: it is a credential.")
    secret_hint: str | None = Field(description="A webhook's signing secret, masked.")
    enabled: bool
    created_at: datetime


class ChannelWithSecretOut(ChannelOut):
    secret: str | None = Field(
        description="A webhook's signing secret (whsec_...): shown only in this response."
    )


class ChannelPage(Schema):
    items: list[ChannelOut]
    total: int
    page: int
    page_size: int


class ChannelCreateIn(Schema):
    kind: Literal["email", "webhook", "slack"]
    name: Name
    target: Target


class ChannelUpdateIn(Schema):
    name: Name | None = None
    target: Target | None = None
    enabled: bool | None = None


def channel_json(channel: NotificationChannel) -> dict:
    return {
        "id": channel.public_id,
        "kind": channel.kind,
        "name": channel.name,
        "target": shown_target(channel),
        "secret_hint": channel.secret_hint or None,
        "enabled": channel.enabled,
        "created_at": channel.created_at,
    }


def _page(items, page: int, page_size: int, as_json) -> dict:
    start = (page - 1) * page_size
    return {
        "items": [as_json(item) for item in items[start : start + page_size]],
        "total": items.count(),
        "page": page,
        "page_size": page_size,
    }


Page = Query(1, ge=1, le=MAX_PAGE)
PageSize = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)


@router.get(
    "/alert-channels", response=ChannelPage, tags=TAGS, operation_id="alert_channels_list",
    summary="List alert channels",
)  # fmt: skip
def channels_list(request, page: int = Page, page_size: int = PageSize):
    return _page(channels_for_account(request.auth.account), page, page_size, channel_json)


@router.post(
    "/alert-channels", response={201: ChannelWithSecretOut}, tags=TAGS,
    operation_id="alert_channels_create", summary="Create an alert channel",
)  # fmt: skip
def channel_create(request, payload: ChannelCreateIn):
    """A webhook channel's signing secret is in this response only."""
    try:
        channel, secret = services.channel_create(
            account=request.auth.account, actor=request.auth, kind=payload.kind,
            name=payload.name, target=payload.target,
        )  # fmt: skip
    except TargetError as error:
        raise _invalid(str(error), "target") from None
    return Status(201, {**channel_json(channel), "secret": secret or None})


@router.get(
    "/alert-channels/{channel_id}", response=ChannelOut, tags=TAGS,
    operation_id="alert_channels_get", summary="Get an alert channel",
)  # fmt: skip
def channel_detail(request, channel_id: str):
    return channel_json(channel_get_for_account(account=request.auth.account, public_id=channel_id))


@router.patch(
    "/alert-channels/{channel_id}", response=ChannelOut, tags=TAGS,
    operation_id="alert_channels_update", summary="Update an alert channel",
)  # fmt: skip
def channel_update(request, channel_id: str, payload: ChannelUpdateIn):
    """Change the name, the target or whether it is enabled; its kind cannot change."""
    channel = channel_get_for_account(account=request.auth.account, public_id=channel_id)
    try:
        channel = services.channel_update(
            channel=channel, actor=request.auth,
            name=payload.name if payload.name is not None else channel.name,
            target=payload.target if payload.target is not None else channel.target,
            enabled=payload.enabled if payload.enabled is not None else channel.enabled,
        )  # fmt: skip
    except TargetError as error:
        raise _invalid(str(error), "target") from None
    return channel_json(channel)


@router.delete(
    "/alert-channels/{channel_id}", response={204: None}, tags=TAGS,
    operation_id="alert_channels_delete", summary="Delete an alert channel",
)  # fmt: skip
def channel_delete(request, channel_id: str):
    channel = channel_get_for_account(account=request.auth.account, public_id=channel_id)
    services.channel_delete(channel=channel, actor=request.auth)
    return Status(204, None)


class DeliveryOut(Schema):
    id: str = Field(description="The webhook-id of its messages.")
    channel_id: str | None
    channel_name: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str
    delivered_at: datetime | None


@router.post(
    "/alert-channels/{channel_id}/test", response={202: DeliveryOut}, tags=TAGS,
    operation_id="alert_channels_test", summary="Send a test alert",
    openapi_extra={
        "responses": {
            "429": {
                "description": "Too many test alerts this hour (code `rate_limit_exceeded`).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        }
    },
)  # fmt: skip
def channel_test(request, channel_id: str):
    """Queue an `alert.test` message to the channel; follow it in GET /api/v1/alerts. At most
    20 test alerts an hour per account."""
    channel = channel_get_for_account(account=request.auth.account, public_id=channel_id)
    delivery = services.channel_test(channel=channel, actor=request.auth)
    return Status(202, delivery_json(delivery))


# --- Rules -----------------------------------------------------------------------------------

RuleKindIn = Literal["balance_below", "key_quota", "monthly_spend", "callback_failures", "budget"]


class RuleOut(Schema):
    id: str
    kind: RuleKindIn
    threshold: CreditsOut | None = Field(description="balance_below and monthly_spend.")
    key_id: str | None = Field(description="key_quota: one key, or null for every key.")
    streak: int | None = Field(description="callback_failures: failed deliveries in a row.")
    channel_ids: list[str]
    enabled: bool
    created_at: datetime


class RulePage(Schema):
    items: list[RuleOut]
    total: int
    page: int
    page_size: int


class RuleCreateIn(Schema):
    kind: RuleKindIn
    threshold: Credits | None = Field(None, description="Credits; balance and spend rules.")
    key_id: str | None = None
    streak: Streak | None = None
    channel_ids: list[str] = Field(min_length=1, max_length=20)
    enabled: bool = True


class RuleUpdateIn(Schema):
    threshold: Credits | None = None
    key_id: str | None = None
    streak: Streak | None = None
    channel_ids: list[str] | None = Field(None, min_length=1, max_length=20)
    enabled: bool | None = None


def rule_json(rule: AlertRule) -> dict:
    return {
        "id": rule.public_id,
        "kind": rule.kind,
        "threshold": credits_json(rule.threshold) if rule.threshold else None,
        "key_id": rule.api_key.public_id if rule.api_key else None,
        "streak": rule.streak,
        "channel_ids": [channel.public_id for channel in rule.channels.all()],
        "enabled": rule.enabled,
        "created_at": rule.created_at,
    }


def _rule_inputs(account, kind: str, *, threshold, key_id, streak, channel_ids) -> dict:
    """The rule's fields, checked against its kind and resolved in the account."""
    if kind in services.THRESHOLD_KINDS and threshold is None:
        raise _invalid(f"A {kind} rule needs a threshold in credits.", "threshold")
    if kind == RuleKind.CALLBACK_FAILURES and streak is None:
        raise _invalid("A callback_failures rule needs a streak.", "streak")
    api_key = None
    if key_id is not None and kind == RuleKind.KEY_QUOTA:
        api_key = api_keys_for_account(account).filter(public_id=key_id).first()
        if api_key is None:
            raise _invalid("No key with this id in your account.", "key_id")
    channels = {c.public_id: c for c in channels_for_account(account)}
    unknown = [channel_id for channel_id in channel_ids if channel_id not in channels]
    if unknown:
        raise _invalid(f"No alert channel {unknown[0]} in your account.", "channel_ids")
    return {
        "threshold": threshold,
        "api_key": api_key,
        "streak": streak,
        "channels": [channels[channel_id] for channel_id in dict.fromkeys(channel_ids)],
    }


@router.get(
    "/alert-rules", response=RulePage, tags=TAGS, operation_id="alert_rules_list",
    summary="List alert rules",
)  # fmt: skip
def rules_list(request, page: int = Page, page_size: int = PageSize):
    return _page(rules_for_account(request.auth.account), page, page_size, rule_json)


@router.post(
    "/alert-rules", response={201: RuleOut}, tags=TAGS, operation_id="alert_rules_create",
    summary="Create an alert rule",
)  # fmt: skip
def rule_create(request, payload: RuleCreateIn):
    """The rule is evaluated at once: if its condition already holds, it fires once."""
    account = request.auth.account
    fields = _rule_inputs(
        account, payload.kind, threshold=payload.threshold, key_id=payload.key_id,
        streak=payload.streak, channel_ids=payload.channel_ids,
    )  # fmt: skip
    rule = services.rule_create(
        account=account, actor=request.auth, kind=payload.kind, enabled=payload.enabled, **fields
    )
    return Status(201, rule_json(rule_get_for_account(account=account, public_id=rule.public_id)))


@router.get(
    "/alert-rules/{rule_id}", response=RuleOut, tags=TAGS, operation_id="alert_rules_get",
    summary="Get an alert rule",
)  # fmt: skip
def rule_detail(request, rule_id: str):
    return rule_json(rule_get_for_account(account=request.auth.account, public_id=rule_id))


@router.patch(
    "/alert-rules/{rule_id}", response=RuleOut, tags=TAGS, operation_id="alert_rules_update",
    summary="Update an alert rule",
)  # fmt: skip
def rule_update(request, rule_id: str, payload: RuleUpdateIn):
    """Change the threshold, key, streak, channels or whether it is enabled (not its kind).
    `"key_id": null` watches every key."""
    account = request.auth.account
    rule = rule_get_for_account(account=account, public_id=rule_id)
    sent = payload.model_dump(exclude_unset=True)
    fields = _rule_inputs(
        account, rule.kind,
        threshold=sent.get("threshold", rule.threshold),
        key_id=sent.get("key_id", rule.api_key.public_id if rule.api_key else None),
        streak=sent.get("streak", rule.streak),
        channel_ids=sent.get("channel_ids") or [c.public_id for c in rule.channels.all()],
    )  # fmt: skip
    enabled = sent["enabled"] if sent.get("enabled") is not None else rule.enabled
    services.rule_update(rule=rule, actor=request.auth, enabled=enabled, **fields)
    return rule_json(rule_get_for_account(account=account, public_id=rule_id))


@router.delete(
    "/alert-rules/{rule_id}", response={204: None}, tags=TAGS, operation_id="alert_rules_delete",
    summary="Delete an alert rule",
)  # fmt: skip
def rule_delete(request, rule_id: str):
    rule = rule_get_for_account(account=request.auth.account, public_id=rule_id)
    services.rule_delete(rule=rule, actor=request.auth)
    return Status(204, None)


# --- Fired alerts ------------------------------------------------------------------------------


class AlertOut(Schema):
    id: str
    type: str = Field(description="alert.<rule kind>, or alert.test.")
    rule_id: str | None
    title: str
    level: str
    data: dict = Field(description="The payload's data, as sent to webhooks.")
    created_at: datetime
    deliveries: list[DeliveryOut]


class AlertPage(Schema):
    items: list[AlertOut]
    total: int
    page: int
    page_size: int


def delivery_json(delivery) -> dict:
    return {
        "id": delivery.webhook_id,
        "channel_id": delivery.channel.public_id if delivery.channel else None,
        "channel_name": delivery.channel_name,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "delivered_at": delivery.delivered_at,
    }


def alert_json(alert: Alert) -> dict:
    return {
        "id": alert.public_id,
        "type": alert.event_type,
        "rule_id": alert.rule.public_id if alert.rule else None,
        "title": alert.title,
        "level": alert.level,
        "data": alert.data,
        "created_at": alert.created_at,
        "deliveries": [delivery_json(d) for d in alert.deliveries.all()],
    }


@router.get(
    "/alerts", response=AlertPage, tags=TAGS, operation_id="alerts_list",
    summary="List fired alerts",
)  # fmt: skip
def alerts_list(request, page: int = Page, page_size: int = PageSize):
    """Fired and test alerts, newest first, each with its deliveries."""
    alerts = alerts_for_account(request.auth.account).prefetch_related("deliveries__channel")
    return _page(alerts, page, page_size, alert_json)
