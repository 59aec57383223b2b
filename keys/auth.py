"""Authentication of inference keys on the data plane, and of management keys on /api/v1.

The data-plane path is async and hot: a malformed key is refused before any I/O, a verified key
is cached by its full digest (shared by all processes when Redis is configured) and the cache
entry is dropped when the key is revoked, rolled, paused, resumed or edited. Status and expiry are
checked on every request.
"""

import ipaddress
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from core import logs
from core.db import run_db
from core.errors import ApiError
from core.http import client_ip
from keys import cache as keycache
from keys.models import ApiKey, KeyStatus, ManagementKey, model_allowed
from keys.services import (
    INFERENCE_KEY_RE,
    MANAGEMENT_KEY_RE,
    MANAGEMENT_PREFIX,
    key_digest,
)

logger = logging.getLogger(__name__)

LAST_USED_EVERY_SECONDS = 60


class KeyAuthError(ApiError):
    """A key refused: missing, unknown, paused, expired or not allowed from this address."""


def _invalid(message: str = "Invalid API key.") -> KeyAuthError:
    return KeyAuthError(401, "invalid_api_key", message)


@dataclass(frozen=True)
class KeyPrincipal:
    """What a request needs to know about the verified key (cached as is). ``from_key`` reads
    the key's account: load it with the key (``select_related("account")``).

    Limits are None when the key has none, else more than zero: ``quota`` and the rolling caps
    in micro-credits, ``rpm`` requests and ``tpm`` tokens (input + output) per minute,
    ``max_concurrent`` calls in flight. ``allowed_models`` are the slugs of the group's models
    the key may call; empty: all of them.
    """

    key_id: int
    key_public_id: str
    key_name: str
    account_id: int
    group_id: int
    status: str
    expires_at: datetime | None
    ip_allowlist: tuple[str, ...]
    ip_denylist: tuple[str, ...]
    quota: int | None
    rate_limit_5h: int | None
    rate_limit_1d: int | None
    rate_limit_7d: int | None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    allowed_models: tuple[str, ...] = ()
    # The account's public id, for log lines (a principal cached before it has "").
    account_public_id: str = ""
    # Who created the key: the member whose budget its calls count against.
    member_id: int | None = None
    # The key's project, whose usage its calls are (a principal cached before projects has
    # None: settlement then reads the key's project).
    project_id: int | None = None
    # When its limits last changed, in unix microseconds (KeyLimits.version; 0: cached before).
    limits_set_at: int = 0

    @classmethod
    def from_key(cls, key: ApiKey) -> "KeyPrincipal":
        return cls(
            key_id=key.pk,
            key_public_id=key.public_id,
            key_name=key.name,
            account_id=key.account_id,
            group_id=key.group_id,
            status=KeyStatus.REVOKED if key.deleted_at else key.status,
            expires_at=key.expires_at,
            ip_allowlist=tuple(key.ip_allowlist),
            ip_denylist=tuple(key.ip_denylist),
            quota=key.quota,
            rate_limit_5h=key.rate_limit_5h,
            rate_limit_1d=key.rate_limit_1d,
            rate_limit_7d=key.rate_limit_7d,
            rpm=key.rpm,
            tpm=key.tpm,
            max_concurrent=key.max_concurrent,
            allowed_models=tuple(key.allowed_models),
            account_public_id=key.account.public_id,
            member_id=key.created_by_id,
            project_id=key.project_id,
            limits_set_at=int(key.limits_set_at.timestamp() * 1_000_000),
        )

    def may_call(self, slug: str) -> bool:
        """Whether the key's allowlist (if it has one) includes the model ``slug``."""
        return model_allowed(self.allowed_models, slug)

    def __setstate__(self, state: dict) -> None:
        # A principal cached by the previous release (for up to BYTESPIKE_KEY_CACHE_SECONDS
        # during a deploy) wrote "no limit" as 0 and had no rpm, tpm or max_concurrent; one
        # cached before allowlists has no allowed_models (the class default, (), applies), one
        # cached before log lines named accounts has no account_public_id (""), one cached
        # before projects no project_id (None).
        for name in ("quota", "rate_limit_5h", "rate_limit_1d", "rate_limit_7d"):
            if state.get(name) == 0:
                state[name] = None
        self.__dict__.update(state)


def presented_key(request) -> str | None:
    """The key from x-api-key, Authorization: Bearer, x-goog-api-key or ?key= (in that order)."""
    headers = request.headers
    if value := headers.get("x-api-key"):
        return value.strip()
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if value := headers.get("x-goog-api-key"):
        return value.strip()
    if value := request.GET.get("key"):
        return value.strip()
    return None


def ip_permitted(address: str, allowlist, denylist) -> bool:
    if not allowlist and not denylist:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in ipaddress.ip_network(net) for net in denylist):
        return False
    return not allowlist or any(ip in ipaddress.ip_network(net) for net in allowlist)


def _check_address(principal: KeyPrincipal, address: str) -> None:
    if not ip_permitted(address, principal.ip_allowlist, principal.ip_denylist):
        raise KeyAuthError(
            403, "permission_denied", "This API key may not be used from your IP address."
        )


def _check(principal: KeyPrincipal, request) -> None:
    if principal.status not in (KeyStatus.ACTIVE, KeyStatus.PAUSED):
        raise _invalid("This API key has been revoked.")
    if principal.expires_at is not None and principal.expires_at <= timezone.now():
        raise _invalid("This API key has expired.")
    _check_address(principal, client_ip(request))
    if principal.status == KeyStatus.PAUSED:
        raise KeyAuthError(
            403,
            "permission_denied",
            "This API key is paused. Resume it in the console, or PATCH "
            f'/api/v1/keys/{principal.key_public_id} with {{"status": "active"}}.',
        )


def _lookup(digest: str) -> KeyPrincipal | None:
    key = ApiKey.objects.filter(digest=digest).select_related("account").first()
    return None if key is None else KeyPrincipal.from_key(key)


_noted: dict[int, float] = {}  # key id -> when this process last wrote its last use


def _note_use(key_id: int) -> None:
    ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())


def _use_due(key_id: int) -> bool:
    """Whether this process should write the key's last use now (at most once a minute)."""
    now = time.monotonic()
    if now - _noted.get(key_id, -LAST_USED_EVERY_SECONDS) < LAST_USED_EVERY_SECONDS:
        return False
    _noted[key_id] = now
    return True


def key_used(key_id: int) -> None:
    """A call was made with the key from the console (the playground): it counts as a use, as
    a call through the API does."""
    if _use_due(key_id):
        _note_use(key_id)


async def authenticate_inference(request) -> KeyPrincipal:
    """Verify the request's inference key or raise ``KeyAuthError`` (401/403). A key this
    process verified lately costs no I/O; its last use is written at most once a minute."""
    secret = presented_key(request)
    if not secret:
        raise _invalid("Missing API key. Send it in the x-api-key or Authorization header.")
    if secret.startswith(MANAGEMENT_PREFIX):
        raise _invalid("Management keys only work on the management API (/api/v1).")
    if not INFERENCE_KEY_RE.fullmatch(secret):
        raise _invalid()
    digest = key_digest(secret)
    keycache.cache.listen()
    principal = keycache.cache.get(digest)
    if principal is keycache.MISSING:
        principal = await run_db(_lookup, digest)
        keycache.cache.put(digest, principal)
    if principal is None:
        raise _invalid()
    _check(principal, request)
    if _use_due(principal.key_id):
        await run_db(_note_use, principal.key_id)
    return principal


def authenticate_management(request) -> ManagementKey:
    """Verify a management key in x-api-key (only there) or raise ``KeyAuthError``."""
    secret = (request.headers.get("x-api-key") or "").strip()
    if not secret:
        raise _invalid("Missing management key. Send it in the x-api-key header.")
    if not MANAGEMENT_KEY_RE.fullmatch(secret):
        if INFERENCE_KEY_RE.fullmatch(secret):
            raise _invalid("Inference keys cannot use the management API.")
        raise _invalid()
    key = (
        ManagementKey.objects.select_related("account")
        .filter(digest=key_digest(secret), status=KeyStatus.ACTIVE)
        .first()
    )
    if key is None:
        raise _invalid()
    logs.bind(account_id=key.account.public_id, key_id=key.public_id)
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() >= 60:
        ManagementKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def principal_for_console(membership, key_public_id: str, *, address: str) -> KeyPrincipal | None:
    """The key a console user chose in the playground, as the data plane would see it.

    None unless the key is theirs to use (``can_manage_key``: developers their own keys in
    projects they still belong to, and every key of a project they are admin of; admins and
    owners any of the account's), active (not paused, not revoked) and not expired. The console
    never holds the secret, but a call made with the key is a call from ``address``
    (``client_ip`` of the console request): the key's IP lists apply, and a refused address raises
    ``KeyAuthError`` (403), as on the API.
    """
    from accounts.permissions import can_manage_key

    key = (
        ApiKey.objects.filter(
            account=membership.account, public_id=key_public_id, deleted_at__isnull=True
        )
        .select_related("group", "account")
        .first()
    )
    if key is None or not key.is_active or key.is_expired:
        return None
    if not can_manage_key(membership, key):
        return None
    principal = KeyPrincipal.from_key(key)
    _check_address(principal, address)
    return principal
