"""Billing around a data-plane call, for the async views: admit (limits, then a worst-case
hold), settle with the actual usage, or release; and the response headers that report the
wallet and the key's limits (SPEC §4)."""

from dataclasses import dataclass

from asgiref.sync import sync_to_async

from accounts.keyauth import KeyPrincipal
from billing import services
from billing.limits import LimitState, key_limits_check
from billing.money import credits_json
from billing.services import BillingError, UsageFacts, WalletState
from generation.dataplane.errors import GatewayError


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
    reset = getattr(error, "reset", None)
    if reset:
        gateway.headers = {"X-RateLimit-Reset": str(reset)}
    return gateway


def _admit(principal: KeyPrincipal, reference: str, amount: int, counts_in_flight: bool):
    try:
        limits = key_limits_check(principal)
        wallet = services.hold_place(
            account_id=principal.account_id,
            reference=reference,
            amount=amount,
            api_key_id=principal.key_id,
            counts_in_flight=counts_in_flight,
        )
    except BillingError as error:
        raise as_gateway_error(error) from None
    return Admission(reference, wallet, limits, amount)


async def admit(
    principal: KeyPrincipal, reference: str, amount: int, *, counts_in_flight: bool = True
) -> Admission:
    return await sync_to_async(_admit)(principal, reference, amount, counts_in_flight)


async def settle(reference: str, charge: int, usage: UsageFacts) -> services.Settlement:
    return await sync_to_async(services.hold_settle)(
        reference=reference, charge=charge, usage=usage
    )


async def release(reference: str) -> bool:
    return await sync_to_async(services.hold_release)(reference=reference)


def current_headers_now(principal: KeyPrincipal) -> dict:
    """The wallet and limit headers as they stand, for code already running in a thread."""
    wallet = services.wallet_state(principal.account_id)
    try:
        limits = key_limits_check(principal)
    except BillingError:
        limits = _exhausted_limits(principal)
    return limit_headers(wallet.available, limits)


def _exhausted_limits(principal: KeyPrincipal) -> LimitState:
    return LimitState(quota_remaining=0 if principal.quota else None)


async def current_headers(principal: KeyPrincipal) -> dict:
    """The wallet and limit headers as they stand (for answers that placed no hold)."""
    return await sync_to_async(current_headers_now)(principal)
