"""Management API resources of an account: its available routing groups and its inference keys.

Every endpoint works inside the account of the calling management key (``request.auth``): it
parses the body, fetches through a selector scoped to that account (another account's key is a
404), calls one key service with the management key as the actor, and serialises. Rules that a
schema cannot express are the key services' ``KeyRuleError``; console/api.py renders all errors.
"""

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from pydantic import (
    AwareDatetime,
    ConfigDict,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)
from pydantic.json_schema import SkipJsonSchema

from accounts.models import Project
from accounts.selectors import projects_for_account
from catalogue.models import RoutingGroup
from catalogue.pricing import price_card
from catalogue.selectors import models_in_group
from core.api import DEFAULT_PAGE_SIZE, MAX_PAGE, MAX_PAGE_SIZE, CreditsOut, credits_in
from core.money import credits_json
from keys.models import ApiKey
from keys.selectors import (
    api_key_get_for_account,
    api_keys_for_account,
    group_get_available,
    groups_available,
)
from keys.services import (
    MAX_ALLOWED_MODELS,
    MAX_CIDRS,
    MAX_NAME,
    KeyRuleError,
    api_key_delete,
    api_key_issue,
    api_key_revoke,
    api_key_roll,
    api_key_update,
)

router = Router()

MAX_EXPIRY_DAYS = 3650


# Every limit: absent or null is no limit; 0 is refused by the key services (pause a key to
# stop it), with a message that says so.
NO_LIMIT = 'Absent or null: no limit. 0 is refused: to stop a key, set its status to "paused".'

Credits = credits_in()
# Requests, tokens or calls; the range is checked by the key services.
Count = Annotated[StrictInt, WithJsonSchema({"type": "integer", "minimum": 1})]
# Checked by the key services, which explain that revoking is a call of its own.
StatusIn = Annotated[StrictStr, WithJsonSchema({"type": "string", "enum": ["active", "paused"]})]


def _limit(description: str):
    return Field(None, description=f"{description} {NO_LIMIT}")


NAME = "Unique among the account's keys that are not deleted (409 key_name_taken otherwise)."
QUOTA = "Lifetime spending cap in credits (1 credit = 1 USD), at most 6 decimals."
CAP_5H = "Credits the key may spend in any 5 hours."
CAP_1D = "Credits the key may spend in any 24 hours."
CAP_7D = "Credits the key may spend in any 7 days."
RPM = "Requests per minute."
TPM = "Tokens per minute, input and output together."
MAX_CONCURRENT = "Calls in flight at once."
STATUS_IN = Field(
    None,
    description='"paused" stops the key until it is set to "active" again. Revoking is '
    "POST /api/v1/keys/{id}/revoke; a revoked key cannot be resumed (409 key_revoked).",
)
Days = Annotated[StrictInt, Field(ge=1, le=MAX_EXPIRY_DAYS)]
Cidrs = Annotated[
    list[str],
    Field(description="IP addresses or CIDR blocks, e.g. 10.0.0.0/8.", max_length=MAX_CIDRS),
]

ALLOWED_MODELS = (
    "Ids of models of the key's group (see GET /api/v1/groups/available) that the key may "
    "call; any other model is refused with 403 model_not_allowed, and /v1/models lists only "
    "these. Empty: every model of the group."
)
ModelIds = Annotated[list[str], Field(description=ALLOWED_MODELS, max_length=MAX_ALLOWED_MODELS)]


# --- Schemas ---------------------------------------------------------------------------------


class ModelOut(Schema):
    slug: str
    display_name: str
    family: str
    context_window: int
    max_output_tokens: int
    pricing: dict[str, Any] = Field(description="Prices in credits after the group multiplier.")


class GroupOut(Schema):
    id: int
    slug: str
    name: str
    description: str
    rate_multiplier: float
    exclusive: bool
    models: list[ModelOut]


class GroupPage(Schema):
    items: list[GroupOut]
    total: int
    page: int
    page_size: int


PROJECT_ID = (
    "The project the key belongs to (see GET /api/v1/projects). Moving a key moves its future "
    "spend only; usage already recorded stays with the project it was in."
)


class KeyOut(Schema):
    id: str = Field(examples=["key_01JD0000000000000000000000"])
    name: str
    project_id: str = Field(description=PROJECT_ID)
    group_id: int
    group: str = Field(description="The routing group's slug.")
    masked_key: str
    status: Literal["active", "paused", "revoked", "expired"] = Field(
        description='"paused": refused until resumed; "expired": past `expires_at`.'
    )
    quota: CreditsOut | None = Field(description=f"{QUOTA} null: no limit.")
    rate_limit_5h: CreditsOut | None = Field(description=f"{CAP_5H} null: no limit.")
    rate_limit_1d: CreditsOut | None = Field(description=f"{CAP_1D} null: no limit.")
    rate_limit_7d: CreditsOut | None = Field(description=f"{CAP_7D} null: no limit.")
    rpm: int | None = Field(description=f"{RPM} null: no limit.")
    tpm: int | None = Field(description=f"{TPM} null: no limit.")
    max_concurrent: int | None = Field(description=f"{MAX_CONCURRENT} null: no limit.")
    expires_at: datetime | None
    ip_allowlist: list[str]
    ip_denylist: list[str]
    allowed_models: list[str] = Field(description=ALLOWED_MODELS)
    created_by: str | None = Field(description="Email of the console user who created it.")
    created_via: Literal["console", "api"]
    created_at: datetime
    last_used_at: datetime | None


class KeyWithSecretOut(KeyOut):
    key: str = Field(description="The plaintext key. Shown only in this response; store it now.")


class KeyPage(Schema):
    items: list[KeyOut]
    total: int
    page: int
    page_size: int


class _KeyLimitsIn(Schema):
    """The limits a key is created with or edited to (the quota stays with the key's own
    fields, where it reads first)."""

    rate_limit_5h: Credits | None = _limit(CAP_5H)
    rate_limit_1d: Credits | None = _limit(CAP_1D)
    rate_limit_7d: Credits | None = _limit(CAP_7D)
    rpm: Count | None = _limit(RPM)
    tpm: Count | None = _limit(TPM)
    max_concurrent: Count | None = _limit(MAX_CONCURRENT)


class KeyCreateIn(_KeyLimitsIn):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "ci",
                    "group_id": 1,
                    "quota": "25",
                    "rpm": 60,
                    "tpm": 100000,
                    "max_concurrent": 4,
                    "expires_in_days": 90,
                },
            ]
        },
    )

    name: str = Field(max_length=MAX_NAME, description=NAME)
    group_id: StrictInt = Field(description="An id from GET /api/v1/groups/available.")
    project_id: str | None = Field(
        None, description=f"{PROJECT_ID} Absent or null: the account's default project."
    )
    quota: Credits | None = _limit(QUOTA)
    expires_in_days: Days | None = None
    expires_at: AwareDatetime | None = Field(None, description="ISO 8601 with a time zone.")
    ip_allowlist: Cidrs = []
    ip_denylist: Cidrs = []
    allowed_models: ModelIds = []


class KeyUpdateIn(_KeyLimitsIn):
    """Only the fields sent change; null removes a limit or the expiry."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"rate_limit_1d": 5.5, "rpm": None, "expires_at": None},
                {"status": "paused"},
            ]
        },
    )

    name: str = Field(None, max_length=MAX_NAME, description=NAME)
    project_id: str = Field(None, description=PROJECT_ID)
    status: StatusIn = STATUS_IN
    quota: Credits | None = _limit(QUOTA)
    expires_in_days: Days = None
    expires_at: AwareDatetime | None = None
    ip_allowlist: Cidrs | None = None
    ip_denylist: Cidrs | None = None
    allowed_models: ModelIds | None = Field(
        None, description=f"{ALLOWED_MODELS} null: the same as []."
    )
    # Not a real field: accepted so the key service can explain why the group cannot change.
    group_id: SkipJsonSchema[Any] = None


# --- Serialisation ---------------------------------------------------------------------------


def group_json(group: RoutingGroup) -> dict:
    return {
        "id": group.pk,
        "slug": group.slug,
        "name": group.name,
        "description": group.description,
        "rate_multiplier": float(group.rate_multiplier),
        "exclusive": group.exclusive,
        "models": [
            {
                "slug": model.slug,
                "display_name": model.display_name,
                "family": model.family,
                "context_window": model.context_window,
                "max_output_tokens": model.max_output_tokens,
                "pricing": price_card(model, group.rate_multiplier),
            }
            for model in models_in_group(group.pk)
        ],
    }


def _credits_or_none(micros: int | None) -> int | float | None:
    return None if micros is None else credits_json(micros)


def key_json(key: ApiKey) -> dict:
    return {
        "id": key.public_id,
        "name": key.name,
        "project_id": key.project.public_id,
        "group_id": key.group_id,
        "group": key.group.slug,
        "masked_key": key.masked,
        "status": key.display_status,
        "quota": _credits_or_none(key.quota),
        "rate_limit_5h": _credits_or_none(key.rate_limit_5h),
        "rate_limit_1d": _credits_or_none(key.rate_limit_1d),
        "rate_limit_7d": _credits_or_none(key.rate_limit_7d),
        "rpm": key.rpm,
        "tpm": key.tpm,
        "max_concurrent": key.max_concurrent,
        "expires_at": key.expires_at,
        "ip_allowlist": key.ip_allowlist,
        "ip_denylist": key.ip_denylist,
        "allowed_models": key.allowed_models,
        "created_by": key.created_by.email if key.created_by else None,
        "created_via": "api" if key.created_via_key_id else "console",
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
    }


def _expiry(fields: dict) -> dict:
    """Turn ``expires_in_days`` into ``expires_at``; sending both is ambiguous."""
    if "expires_in_days" not in fields:
        return fields
    days = fields.pop("expires_in_days")
    if days is None:
        return fields
    if "expires_at" in fields:
        raise KeyRuleError("Give expires_at or expires_in_days, not both.", "expires_in_days")
    fields["expires_at"] = timezone.now() + timedelta(days=days)
    return fields


def _project(request, project_id) -> Project:
    """A project of the caller's account, else a 400 on ``project_id`` (it is a parameter
    here, not the resource the URL names)."""
    project = projects_for_account(request.auth.account).filter(public_id=project_id or "").first()
    if project is None:
        raise KeyRuleError("No project with this id in your account.", "project_id")
    return project


# --- Groups ----------------------------------------------------------------------------------


@router.get(
    "/groups/available",
    response=GroupPage,
    tags=["groups"],
    operation_id="groups_available",
    summary="List available routing groups",
)
def groups_available_list(request):
    """Routing groups your keys can use (public ones and exclusive ones granted to you), with
    their active models and prices."""
    items = [group_json(group) for group in groups_available(request.auth.account)]
    return {"items": items, "total": len(items), "page": 1, "page_size": len(items)}


# --- Keys ------------------------------------------------------------------------------------


@router.get("/keys", response=KeyPage, tags=["keys"], operation_id="keys_list", summary="List keys")
def keys_list(
    request,
    page: int = Query(1, ge=1, le=MAX_PAGE),
    page_size: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
    project_id: str | None = Query(None, description="Only the keys of this project."),
):
    """Your account's inference keys, newest first. Deleted keys are not listed."""
    keys = api_keys_for_account(request.auth.account)
    if project_id:
        keys = keys.filter(project=_project(request, project_id))
    start = (page - 1) * page_size
    return {
        "items": [key_json(key) for key in keys[start : start + page_size]],
        "total": keys.count(),
        "page": page,
        "page_size": page_size,
    }


@router.post(
    "/keys",
    response={201: KeyWithSecretOut},
    tags=["keys"],
    operation_id="keys_create",
    summary="Create a key",
    openapi_extra={
        "responses": {
            "409": {
                "description": "Another key of the account (not deleted) has this `name` "
                "(code `key_name_taken`).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        }
    },
)
def key_create(request, payload: KeyCreateIn):
    """Create an inference key in one of your available groups. The response carries the
    plaintext `key`; it is never shown again."""
    account = request.auth.account
    group = group_get_available(account=account, group_id=payload.group_id)
    if group is None:
        raise KeyRuleError(
            "No routing group with this id is available to your account.", "group_id"
        )
    fields = _expiry(payload.model_dump(exclude={"group_id", "project_id"}, exclude_unset=True))
    project = _project(request, payload.project_id) if payload.project_id else None
    key, secret = api_key_issue(
        account=account, group=group, project=project, via_key=request.auth, **fields
    )
    return Status(201, {**key_json(key), "key": secret})


@router.get(
    "/keys/{key_id}", response=KeyOut, tags=["keys"], operation_id="keys_get", summary="Get a key"
)
def key_detail(request, key_id: str):
    return key_json(api_key_get_for_account(account=request.auth.account, public_id=key_id))


@router.patch(
    "/keys/{key_id}",
    response=KeyOut,
    tags=["keys"],
    operation_id="keys_update",
    summary="Update a key",
    openapi_extra={
        "responses": {
            "409": {
                "description": "`status` sent for a revoked key (code `key_revoked`), or a "
                "`name` another key of the account has (code `key_name_taken`).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        }
    },
)
def key_update(request, key_id: str, payload: KeyUpdateIn):
    """Change the name, project, limits, expiry, IP lists or allowed models, or pause
    (`"status": "paused"`) and resume (`"status": "active"`) the key. A key's group cannot
    change; a revoked key cannot be paused or resumed (409)."""
    key = api_key_get_for_account(account=request.auth.account, public_id=key_id)
    changes = _expiry(payload.model_dump(exclude_unset=True))
    if "project_id" in changes:
        changes["project"] = _project(request, changes.pop("project_id"))
    if not changes:
        return key_json(key)  # nothing to write, so nothing to audit
    return key_json(api_key_update(key=key, via_key=request.auth, **changes))


@router.delete(
    "/keys/{key_id}",
    response={204: None},
    tags=["keys"],
    operation_id="keys_delete",
    summary="Delete a key",
)
def key_delete(request, key_id: str):
    """Revoke the key and remove it from lists; its past usage stays attributed to it."""
    key = api_key_get_for_account(account=request.auth.account, public_id=key_id)
    api_key_delete(key=key, via_key=request.auth)
    return Status(204, None)


@router.post(
    "/keys/{key_id}/roll",
    response=KeyWithSecretOut,
    tags=["keys"],
    operation_id="keys_roll",
    summary="Roll a key's secret",
)
def key_roll(request, key_id: str):
    """Replace the key's secret: the old one stops working at once. The response carries the
    new plaintext `key`; it is never shown again."""
    key = api_key_get_for_account(account=request.auth.account, public_id=key_id)
    secret = api_key_roll(key=key, via_key=request.auth)
    return {**key_json(key), "key": secret}


@router.post(
    "/keys/{key_id}/revoke",
    response=KeyOut,
    tags=["keys"],
    operation_id="keys_revoke",
    summary="Revoke a key",
)
def key_revoke(request, key_id: str):
    """Revoke the key for good but keep it listed. Revoking a revoked key changes nothing."""
    key = api_key_get_for_account(account=request.auth.account, public_id=key_id)
    return key_json(api_key_revoke(key=key, via_key=request.auth))
