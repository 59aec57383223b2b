"""The data plane's side of the metering engine (billing/metering): admission refusals as
gateway errors with their Retry-After and X-RateLimit-* headers, and the wallet and limit
headers of answers that admitted nothing."""

import time

from accounts.keyauth import KeyPrincipal
from billing.errors import BillingError
from billing.metering import Call, LimitState, limit_headers, meter, run_db
from billing.metering.headers import rate_limit_headers
from billing.models import KeyTotal
from billing.services import WalletState, wallet_state
from generation.dataplane.errors import GatewayError


def as_gateway_error(error: BillingError) -> GatewayError:
    gateway = GatewayError(error.status, error.code, error.message)
    gateway.headers = refusal_headers(error)
    return gateway


def refusal_headers(error) -> dict:
    """Retry-After and the X-RateLimit-* set of the limit that refused a call (none for a
    quota or a wallet: waiting does not help)."""
    headroom = getattr(error, "headroom", None)
    if headroom is None:
        return {}
    retry = max(headroom.reset - int(time.time()), 1)
    headers = rate_limit_headers(headroom.name, headroom.limit, 0, headroom.reset)
    return {"Retry-After": str(retry), **headers}


async def admit(principal: KeyPrincipal, reference: str, credits: int, *, tokens: int = 0) -> Call:
    """Admit a data-plane call, or raise the gateway error its refusal is."""
    try:
        return await meter.admit(principal, reference=reference, credits=credits, tokens=tokens)
    except BillingError as error:
        raise as_gateway_error(error) from None


def current_headers_now(principal: KeyPrincipal) -> dict:
    """The wallet and limit headers as they stand, for code already running in a thread (an
    answer that admitted no call: what the key's limits are, not what they would admit)."""
    spent = 0
    if principal.quota:
        spent = (
            KeyTotal.objects.filter(api_key_id=principal.key_id)
            .values_list("credits", flat=True)
            .first()
        ) or 0
    return books_headers(principal, wallet_state(principal.account_id), spent)


def books_headers(principal: KeyPrincipal, wallet: WalletState, key_spent: int) -> dict:
    """The wallet and quota headers from a wallet and a key's spend already read."""
    quota_left = principal.quota - key_spent if principal.quota else None
    return limit_headers(wallet.available, LimitState(quota_remaining=quota_left))


async def current_headers(principal: KeyPrincipal) -> dict:
    return await run_db(current_headers_now, principal)
