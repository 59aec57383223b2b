"""The wallet and limit headers of data-plane answers that admitted no call. (Calls are admitted
by ``billing.metering.meter`` itself: a refusal is billing's own error, which carries its
Retry-After and X-RateLimit-* headers.)"""

from billing.metering import LimitState, limit_headers, run_db
from billing.models import KeyTotal
from billing.services import WalletState, wallet_state
from keys.auth import KeyPrincipal


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
