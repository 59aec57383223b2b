"""API keys: their secrets, validation rules and every write to them.

A secret is shown once, when it is issued or rolled. The database keeps its HMAC-SHA256 digest
under a server pepper, plus a prefix and the last four characters for display.
"""

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import string
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account, Project, User
from accounts.services import audit_record, project_default
from catalogue.models import RoutingGroup
from catalogue.selectors import models_in_group
from core.ratelimit import allow
from keys import cache as keycache
from keys.models import LIMIT_FIELDS, ApiKey, KeyStatus, ManagementKey
from keys.selectors import group_is_available

INFERENCE_PREFIX = "sk-byts-"
MANAGEMENT_PREFIX = "sk-byts-admin-"
SECRET_LENGTH = 40
_ALPHABET = string.ascii_letters + string.digits
INFERENCE_KEY_RE = re.compile(r"sk-byts-[A-Za-z0-9]{32,128}")
MANAGEMENT_KEY_RE = re.compile(r"sk-byts-admin-[A-Za-z0-9]{32,128}")
MAX_CIDRS = 100
MAX_ALLOWED_MODELS = 100
logger = logging.getLogger(__name__)
MAX_NAME = 100


class KeyRuleError(ValueError):
    """A key request that breaks a rule; ``field`` names the offending input."""

    status = 400
    code = "invalid_param"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class KeyCreationLimitedError(KeyRuleError):
    status = 429
    code = "rate_limit_exceeded"


class KeyNameTakenError(KeyRuleError):
    """Another key of the account (not deleted) already has this name."""

    status = 409
    code = "key_name_taken"

    def __init__(self, name: str):
        super().__init__(f"A key named “{name}” already exists.", "name")


class KeyRevokedError(KeyRuleError):
    """A change that only a key still in use can take (pause, resume)."""

    status = 409
    code = "key_revoked"


def _check_creation_rate(account: Account) -> None:
    """A ceiling on new keys per account and hour: a leaked session or management key cannot
    mint keys by the thousand."""
    limit = settings.BYTESPIKE_KEY_CREATION_LIMIT
    if not allow("key-create", account.pk, limit=limit, period=3600):
        raise KeyCreationLimitedError(
            f"This account created {limit} keys in the last hour; try again later.", "name"
        )


def key_digest(secret: str) -> str:
    return hmac.new(
        settings.BYTESPIKE_KEY_PEPPER.encode(), secret.encode(), hashlib.sha256
    ).hexdigest()


def _new_secret(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def _store_secret(key, secret: str, prefix: str) -> None:
    key.digest = key_digest(secret)
    key.prefix = secret[: len(prefix) + 4]
    key.last4 = secret[-4:]


def _forget_on_commit(*digests: str) -> None:
    """Every web process forgets these keys once the change is committed."""
    transaction.on_commit(lambda: keycache.publish_forget(digests))


# --- Validation shared by the console and the management API --------------------------------


def clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise KeyRuleError("Give the key a name.", "name")
    if len(name) > MAX_NAME:
        raise KeyRuleError(f"Use at most {MAX_NAME} characters for the name.", "name")
    return name


def _check_name_free(account: Account, name: str, *, exclude_pk: int | None = None) -> None:
    """Names tell keys apart in lists and usage; the database constraint backs this check."""
    others = ApiKey.objects.filter(account=account, name=name, deleted_at__isnull=True)
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    if others.exists():
        raise KeyNameTakenError(name)


def _save_named(key: ApiKey, **save_options) -> None:
    """Save inside the caller's transaction; a name taken meanwhile by a concurrent request is
    the same clear refusal as one taken before."""
    try:
        with transaction.atomic():
            key.save(**save_options)
    except IntegrityError:
        if (
            ApiKey.objects.filter(account_id=key.account_id, name=key.name, deleted_at__isnull=True)
            .exclude(pk=key.pk)
            .exists()
        ):
            raise KeyNameTakenError(key.name) from None
        raise


def clean_cidrs(values, field: str) -> list[str]:
    """Normalise a list of addresses or CIDR blocks (``10.0.0.0/8``, ``2001:db8::/32``)."""
    if isinstance(values, str):
        values = [part for part in re.split(r"[\s,]+", values) if part]
    if not isinstance(values, list | tuple):
        raise KeyRuleError("Give a list of IP addresses or CIDR blocks.", field)
    if len(values) > MAX_CIDRS:
        raise KeyRuleError(f"Give at most {MAX_CIDRS} entries.", field)
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(str(value).strip(), strict=False)))
        except ValueError:
            raise KeyRuleError(f"“{value}” is not an IP address or CIDR block.", field) from None
    return list(dict.fromkeys(networks))


def clean_allowed_models(values, group_id: int) -> list[str]:
    """The model ids (slugs) a key of group ``group_id`` may call: each an active model of that
    group, in the order given, without repeats. Empty: every model of the group."""
    field = "allowed_models"
    if values is None:
        return []
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise KeyRuleError("Give a list of model ids, or an empty list for every model.", field)
    if len(values) > MAX_ALLOWED_MODELS:
        raise KeyRuleError(f"Give at most {MAX_ALLOWED_MODELS} models.", field)
    slugs = list(dict.fromkeys(values))
    if slugs:
        in_group = set(models_in_group(group_id).values_list("slug", flat=True))
        for slug in slugs:
            if slug not in in_group:
                raise KeyRuleError(f"“{slug}” is not a model of this key's routing group.", field)
    return slugs


# Limits in micro-credits; the others count requests, tokens or calls.
MONEY_LIMITS = ("quota", "rate_limit_5h", "rate_limit_1d", "rate_limit_7d")
COUNT_LIMITS = {
    "rpm": 2**31 - 1,  # what the columns hold
    "tpm": 2**63 - 1,
    "max_concurrent": 2**31 - 1,
}
# A limit of 0 is never "unlimited" (that is null) nor a way to stop a key (that is a pause).
ZERO_LIMIT_MESSAGE = (
    'A limit of 0 would stop the key. To stop it for now, pause it: set status to "paused".'
)


def _check_limits(limits: dict) -> None:
    """Every limit is None (no limit) or more than zero; an expiry is in the future."""
    for field in LIMIT_FIELDS:
        value = limits.get(field)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise KeyRuleError("Give a number, or null for no limit.", field)
        if value == 0:
            raise KeyRuleError(ZERO_LIMIT_MESSAGE, field)
        if field in MONEY_LIMITS and value < 0:
            raise KeyRuleError("Limits are amounts of credits, more than zero.", field)
        if field in COUNT_LIMITS and value < 0:
            raise KeyRuleError("Give a whole number, 1 or more, or null for no limit.", field)
        if field in COUNT_LIMITS and value > COUNT_LIMITS[field]:
            raise KeyRuleError(f"Give at most {COUNT_LIMITS[field]:,}.", field)
    expires_at = limits.get("expires_at")
    if expires_at is not None and expires_at <= timezone.now():
        raise KeyRuleError("The expiry must be in the future.", "expires_at")


def _check_project(account: Account, project: Project) -> None:
    if project.account_id != account.pk or project.deleted_at is not None:
        raise KeyRuleError("No project with this id in your account.", "project_id")


# --- Inference keys --------------------------------------------------------------------------

EDITABLE = (
    "name",
    *LIMIT_FIELDS,
    "expires_at",
    "ip_allowlist",
    "ip_denylist",
    "allowed_models",
    "project",
)
# What a key's owner may set its status to; revoking has its own service (it is final).
SETTABLE_STATUSES = (KeyStatus.ACTIVE, KeyStatus.PAUSED)


def _actor_label(actor: User | None, via_key: ManagementKey | None) -> str:
    if via_key is not None:
        return f"management key {via_key.name} ({via_key.masked})"
    return actor.email if actor else "system"


def api_key_issue(
    *,
    account: Account,
    group: RoutingGroup,
    name: str,
    project: Project | None = None,
    actor: User | None = None,
    via_key: ManagementKey | None = None,
    quota: int | None = None,
    rate_limit_5h: int | None = None,
    rate_limit_1d: int | None = None,
    rate_limit_7d: int | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    max_concurrent: int | None = None,
    expires_at: datetime | None = None,
    ip_allowlist=(),
    ip_denylist=(),
    allowed_models=(),
) -> tuple[ApiKey, str]:
    """A new inference key bound to ``group`` in ``project`` (the account's default project
    when None); returns the key and its only plaintext copy.

    A limit left at None is no limit; no ``allowed_models`` is every model of the group."""
    if not group_is_available(account=account, group=group):
        raise KeyRuleError("That routing group is not available to this account.", "group_id")
    if project is None:
        project = project_default(account)
    _check_project(account, project)
    _check_creation_rate(account)
    limits = {
        "quota": quota,
        "rate_limit_5h": rate_limit_5h,
        "rate_limit_1d": rate_limit_1d,
        "rate_limit_7d": rate_limit_7d,
        "rpm": rpm,
        "tpm": tpm,
        "max_concurrent": max_concurrent,
        "expires_at": expires_at,
    }
    _check_limits(limits)
    name = clean_name(name)
    _check_name_free(account, name)
    key = ApiKey(
        account=account,
        project=project,
        group=group,
        name=name,
        created_by=actor,
        created_via_key=via_key,
        ip_allowlist=clean_cidrs(list(ip_allowlist), "ip_allowlist"),
        ip_denylist=clean_cidrs(list(ip_denylist), "ip_denylist"),
        allowed_models=clean_allowed_models(allowed_models, group.pk),
        **limits,
    )
    secret = _new_secret(INFERENCE_PREFIX)
    _store_secret(key, secret, INFERENCE_PREFIX)
    with transaction.atomic():
        _save_named(key)
        audit_record(
            account=account,
            actor=actor,
            actor_label=_actor_label(actor, via_key),
            action="api_key.create",
            target=f"{key.name} ({key.masked})",
            key=key.public_id,
            group=group.slug,
            project=project.public_id,
            **({"allowed_models": key.allowed_models} if key.allowed_models else {}),
        )
    return key, secret


def api_key_update(
    *, key: ApiKey, actor: User | None = None, via_key: ManagementKey | None = None, **changes
) -> ApiKey:
    """Change a key's name, limits, expiry, IP lists, allowed models or status; the group stays
    as issued.

    ``status`` pauses (``"paused"``) or resumes (``"active"``) the key; a revoked key stays
    revoked (``KeyRevokedError``). All the changes are written together or not at all.
    """
    status = changes.pop("status", None)
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        field = sorted(unknown)[0]
        message = (
            "A key's group cannot change; create a new key in the other group."
            if field == "group_id"
            else f"“{field}” cannot be changed."
        )
        raise KeyRuleError(message, field)
    if status is not None:
        _check_status_change(key, status)
    if "name" in changes:
        changes["name"] = clean_name(changes["name"])
        if changes["name"] == key.name:
            del changes["name"]
        else:
            _check_name_free(key.account, changes["name"], exclude_pk=key.pk)
    for field in ("ip_allowlist", "ip_denylist"):
        if field in changes:
            changes[field] = clean_cidrs(changes[field] or [], field)
    if "allowed_models" in changes:
        changes["allowed_models"] = clean_allowed_models(changes["allowed_models"], key.group_id)
    if "project" in changes:
        # Moving a key moves its future spend: usage already settled keeps its project.
        _check_project(key.account, changes["project"])
        if changes["project"].pk == key.project_id:
            del changes["project"]
    limits = {field: changes.get(field, getattr(key, field)) for field in LIMIT_FIELDS}
    limits["expires_at"] = changes.get("expires_at", key.expires_at)
    if "expires_at" not in changes:
        limits["expires_at"] = None  # an unchanged (even past) expiry is not re-validated
    _check_limits(limits)
    before = {field: getattr(key, field) for field in changes}
    for field, value in changes.items():
        setattr(key, field, value)
    saved = list(changes)
    if any(changes[field] != before[field] for field in LIMIT_FIELDS if field in changes):
        key.limits_set_at = timezone.now()  # a new version of the limits (KeyLimits.version)
        saved.append("limits_set_at")
    with transaction.atomic():
        if changes:
            _save_named(key, update_fields=saved)
            audit_record(
                account=key.account,
                actor=actor,
                actor_label=_actor_label(actor, via_key),
                action="api_key.update",
                target=f"{key.name} ({key.masked})",
                key=key.public_id,
                fields=sorted(changes),
                before={f: _audit_value(v) for f, v in before.items()},
            )
            _forget_on_commit(key.digest)
        if status is not None:
            _set_status(key, status, actor=actor, via_key=via_key)
    return key


def _audit_value(value) -> str | None:
    if value is None:
        return None
    return value.public_id if isinstance(value, Project) else str(value)


def _check_status_change(key: ApiKey, status: str) -> None:
    if status not in SETTABLE_STATUSES:
        raise KeyRuleError(
            'Set status to "active" or "paused". Revoking is final and has a call of its own: '
            f"POST /api/v1/keys/{key.public_id}/revoke.",
            "status",
        )
    if key.is_revoked:
        raise KeyRevokedError(
            "This key is revoked, and a revoked key cannot be paused or resumed. "
            "Create a new key instead.",
            "status",
        )


def _set_status(key: ApiKey, status: str, *, actor, via_key) -> None:
    """Pause or resume (nothing to do when the key already has that status), inside the
    caller's transaction.

    A conditional UPDATE: a key revoked meanwhile stays revoked.
    """
    changed = (
        ApiKey.objects.filter(pk=key.pk)
        .exclude(status__in=[KeyStatus.REVOKED, status])
        .update(status=status)
    )
    if not changed:
        key.status = ApiKey.objects.values_list("status", flat=True).get(pk=key.pk)
        _check_status_change(key, status)
        return
    key.status = status
    audit_record(
        account=key.account,
        actor=actor,
        actor_label=_actor_label(actor, via_key),
        action="api_key.pause" if status == KeyStatus.PAUSED else "api_key.resume",
        target=f"{key.name} ({key.masked})",
        key=key.public_id,
    )
    _forget_on_commit(key.digest)


def api_key_roll(
    *, key: ApiKey, actor: User | None = None, via_key: ManagementKey | None = None
) -> str:
    """Replace the key's secret; the old one stops working at once. Returns the new secret."""
    if key.is_revoked:
        raise KeyRuleError("A revoked key cannot be rolled; create a new key.", "status")
    old_digest = key.digest
    secret = _new_secret(INFERENCE_PREFIX)
    _store_secret(key, secret, INFERENCE_PREFIX)
    key.rolled_at = timezone.now()
    with transaction.atomic():
        key.save(update_fields=["digest", "prefix", "last4", "rolled_at"])
        audit_record(
            account=key.account,
            actor=actor,
            actor_label=_actor_label(actor, via_key),
            action="api_key.roll",
            target=f"{key.name} ({key.masked})",
            key=key.public_id,
        )
        _forget_on_commit(old_digest, key.digest)
    return secret


def api_key_revoke(
    *, key: ApiKey, actor: User | None = None, via_key: ManagementKey | None = None
) -> ApiKey:
    """Revoke for good (idempotent), active or paused: calls with the key fail from now on."""
    with transaction.atomic():
        revoked = (
            ApiKey.objects.filter(pk=key.pk)
            .exclude(status=KeyStatus.REVOKED)
            .update(status=KeyStatus.REVOKED, revoked_at=timezone.now())
        )
        if revoked:
            audit_record(
                account=key.account,
                actor=actor,
                actor_label=_actor_label(actor, via_key),
                action="api_key.revoke",
                target=f"{key.name} ({key.masked})",
                key=key.public_id,
            )
        _forget_on_commit(key.digest)
    key.refresh_from_db()
    return key


def api_key_delete(
    *, key: ApiKey, actor: User | None = None, via_key: ManagementKey | None = None
) -> None:
    """Revoke and hide the key. Its row stays so past usage keeps its name."""
    now = timezone.now()
    with transaction.atomic():
        ApiKey.objects.filter(pk=key.pk).update(
            status=KeyStatus.REVOKED, revoked_at=key.revoked_at or now, deleted_at=now
        )
        audit_record(
            account=key.account,
            actor=actor,
            actor_label=_actor_label(actor, via_key),
            action="api_key.delete",
            target=f"{key.name} ({key.masked})",
            key=key.public_id,
        )
        _forget_on_commit(key.digest)


# --- Management keys -------------------------------------------------------------------------


def management_key_issue(*, account: Account, actor: User, name: str) -> tuple[ManagementKey, str]:
    key = ManagementKey(account=account, name=clean_name(name), created_by=actor)
    _check_creation_rate(account)
    secret = _new_secret(MANAGEMENT_PREFIX)
    _store_secret(key, secret, MANAGEMENT_PREFIX)
    with transaction.atomic():
        key.save()
        audit_record(
            account=account,
            actor=actor,
            action="management_key.create",
            target=f"{key.name} ({key.masked})",
            key=key.public_id,
        )
    return key, secret


def management_key_revoke(*, key: ManagementKey, actor: User) -> None:
    with transaction.atomic():
        revoked = ManagementKey.objects.filter(pk=key.pk, status=KeyStatus.ACTIVE).update(
            status=KeyStatus.REVOKED, revoked_at=timezone.now()
        )
        if revoked:
            audit_record(
                account=key.account,
                actor=actor,
                action="management_key.revoke",
                target=f"{key.name} ({key.masked})",
                key=key.public_id,
            )
        _forget_on_commit(key.digest)
