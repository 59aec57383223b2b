"""Reads of the wallet that pages and the management API share."""

from accounts.models import Account
from billing.models import Wallet


def wallet_of(account: Account) -> Wallet:
    """The account's wallet. Every account gets one when it is created; for one that has none,
    an unsaved empty wallet, which reads the same."""
    return Wallet.objects.filter(account=account).first() or Wallet(account=account)
