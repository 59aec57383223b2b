"""Billing around a data-plane call, for the async views: admit (the key's limits and a
worst-case hold, in one transaction), settle with the actual usage, or release; the response
headers that report the wallet and the key's limits (SPEC §4); and the renewal of the holds of
calls still running, so that only a dead process's holds are released as stale.
"""

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections

from accounts.keyauth import KeyPrincipal
from billing import services
from billing.limits import LimitState, key_limits_check
from billing.money import credits_json
from billing.services import BillingError, UsageFacts, WalletState
from generation.dataplane.errors import GatewayError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Admission:
    reference: str
    wallet: WalletState
    limits: LimitState
    held: int

    def headers(self) -> dict:
        return limit_headers(self.wallet.available, self.limits, self.held)


def limit_headers(available: int, limits: LimitState, pending: int = 0) -> dict:
    headers = {"X-Org-Quota-Remaining-Credits": str(credits_json(max(available, 0)))}
    if limits.quota_remaining is not None:
        remaining = max(limits.quota_remaining - pending, 0)
        headers["X-Quota-Remaining-Credits"] = str(credits_json(remaining))
    if limits.rate_limit is not None:
        headers["X-RateLimit-Limit"] = str(credits_json(limits.rate_limit))
        remaining = max(limits.rate_remaining - pending, 0)
        headers["X-RateLimit-Remaining"] = str(credits_json(remaining))
        headers["X-RateLimit-Reset"] = str(limits.rate_reset)
    return headers


def as_gateway_error(error: BillingError) -> GatewayError:
    gateway = GatewayError(error.status, error.code, error.message)
    gateway.headers = retry_headers(getattr(error, "reset", None))
    return gateway


def retry_headers(reset: int | None) -> dict:
    """Retry-After and X-RateLimit-Reset for a refusal that frees up at ``reset`` (unix s)."""
    if not reset:
        return {}
    return {"Retry-After": str(max(reset - int(time.time()), 1)), "X-RateLimit-Reset": str(reset)}


# --- Calls running in this process -----------------------------------------------------------
# Their holds are renewed every quarter of BYTESPIKE_HOLD_STALE_SECONDS by a thread of the web
# process (started by console/asgi.py), which also releases holds that nobody renewed: those of
# a process that died. A call's hold is forgotten here once it is settled or released.

_running: set[str] = set()
_running_lock = threading.Lock()


def _track(reference: str) -> None:
    with _running_lock:
        _running.add(reference)


def _untrack(reference: str) -> None:
    with _running_lock:
        _running.discard(reference)


def running() -> set[str]:
    with _running_lock:
        return set(_running)


def renew_and_sweep() -> tuple[int, int]:
    """Renew this process's running holds and release stale ones; (renewed, released)."""
    stale = timedelta(seconds=settings.BYTESPIKE_HOLD_STALE_SECONDS)
    renewed = services.holds_renew(references=running())
    released = services.holds_release_stale(older_than=stale)
    return renewed, released


# In-process tests turn this off (tests/conftest.py): the thread would write to the test database
# behind their backs. Tests of renewal run real web processes or call renew_and_sweep().
renewals_enabled = True


def start_renewals() -> threading.Thread | None:
    """Renew and sweep in a daemon thread, for as long as the web process lives."""
    if not renewals_enabled:
        return None

    def loop():
        while True:
            time.sleep(settings.BYTESPIKE_HOLD_STALE_SECONDS / 4)
            try:
                renew_and_sweep()
            except Exception:  # the database may be restarting: try again next time
                logger.warning("could not renew running holds", exc_info=True)
            finally:
                connections.close_all()

    thread = threading.Thread(target=loop, name="hold-renewals", daemon=True)
    thread.start()
    return thread


# --- Admit, settle, release ------------------------------------------------------------------


def _admit(principal: KeyPrincipal, reference: str, amount: int, counts_in_flight: bool):
    """Place the hold with the key's limits checked in the same transaction."""
    try:
        return _place(principal, reference, amount, counts_in_flight)
    finally:
        # A streamed answer keeps its request, and this thread's connection, open for as long as
        # it streams: give the connection back to the pool now, or open streams exhaust it.
        pooled = connection.settings_dict.get("OPTIONS", {}).get("pool")
        if pooled and not connection.in_atomic_block:  # (a test's transaction stays open)
            connection.close()


def _place(principal: KeyPrincipal, reference: str, amount: int, counts_in_flight: bool):
    try:
        wallet = services.hold_place(
            account_id=principal.account_id,
            reference=reference,
            amount=amount,
            api_key_id=principal.key_id,
            counts_in_flight=counts_in_flight,
            key_limits=principal,
        )
        limits = key_limits_state(principal, pending=amount)
    except BillingError as error:
        raise as_gateway_error(error) from None
    if counts_in_flight:
        _track(reference)
    return Admission(reference, wallet, limits, amount)


def key_limits_state(principal: KeyPrincipal, *, pending: int = 0) -> LimitState:
    """What the key's limit headers report, before a call of ``pending`` credits."""
    try:
        return key_limits_check(principal, pending=pending)
    except BillingError:
        return _exhausted_limits(principal)


async def admit(
    principal: KeyPrincipal, reference: str, amount: int, *, counts_in_flight: bool = True
) -> Admission:
    return await sync_to_async(_admit)(principal, reference, amount, counts_in_flight)


def settle_now(reference: str, charge: int, usage: UsageFacts) -> services.Settlement:
    """Settle a call's hold (for code already running in a thread)."""
    try:
        return services.hold_settle(reference=reference, charge=charge, usage=usage)
    finally:
        _untrack(reference)


def release_now(reference: str) -> bool:
    try:
        return services.hold_release(reference=reference)
    finally:
        _untrack(reference)


async def settle(reference: str, charge: int, usage: UsageFacts) -> services.Settlement:
    return await sync_to_async(settle_now)(reference, charge, usage)


async def release(reference: str) -> bool:
    return await sync_to_async(release_now)(reference)


def current_headers_now(principal: KeyPrincipal) -> dict:
    """The wallet and limit headers as they stand, for code already running in a thread."""
    wallet = services.wallet_state(principal.account_id)
    return limit_headers(wallet.available, key_limits_state(principal))


def _exhausted_limits(principal: KeyPrincipal) -> LimitState:
    return LimitState(quota_remaining=0 if principal.quota else None)


async def current_headers(principal: KeyPrincipal) -> dict:
    """The wallet and limit headers as they stand (for answers that placed no hold)."""
    return await sync_to_async(current_headers_now)(principal)
