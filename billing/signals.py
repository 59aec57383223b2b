"""What billing tells the apps above it, which it cannot import (docs/architecture.md)."""

from django.dispatch import Signal

# Credits were added to a wallet (a top-up, a redeemed code, a credit by staff, a refund).
# Sent inside the crediting transaction, under the wallet's lock, with ``account_id`` and the
# wallet's ``available`` balance after it; receivers must stay cheap (one statement).
wallet_credited = Signal()

# A web process's settlement batches started (``lagging`` True) or stopped lagging: its answered
# calls waited ``seconds`` for their batch. ``owner`` names the process. Sent from a database
# thread, rarely (once per crossing of BYTESPIKE_OPERATOR_SETTLEMENT_LAG_SECONDS).
settlement_lagging = Signal()
