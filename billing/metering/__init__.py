"""The metering engine: the only way spend enters the books (billing/metering/engine.py).

Calls: ``call = await meter.admit(principal, reference=..., credits=..., tokens=...)``, then
``await call.settle(cost, usage)``, or ``await call.release()`` if it failed (free). (Not a
``with`` block: a stream's call outlives the view that admitted it.) Tasks:
``meter.task_reserve`` at submit (the key's limits), ``task_hold`` in the submit's transaction,
``task_settle`` / ``task_release`` at the task's end. Nothing else places, settles or releases a
hold (tests/billing/test_one_door.py fails if something does).
"""

from datetime import datetime

from billing import holds
from billing.holds import Settlement
from billing.metering.engine import Call, Meter, meter
from billing.metering.headers import limit_headers
from billing.metering.limits import KeyLimits, LimitState
from billing.models import HoldKind
from billing.services import WalletState
from billing.usage import UsageFacts
from core.db import run_db

__all__ = [
    "Call", "KeyLimits", "LimitState", "Meter", "Settlement", "UsageFacts", "WalletState",
    "limit_headers", "meter", "record_usage", "run_db", "task_hold", "task_release",
    "task_settle",
]  # fmt: skip


def task_hold(*, account_id: int, reference: str, amount: int, api_key_id: int | None,
              key_limits=None) -> WalletState:  # fmt: skip
    """Hold a task's estimate, in the submit's transaction (``key_limits``: checked there too,
    for when the counters could not be reached)."""
    return holds.hold_place(
        account_id=account_id, reference=reference, amount=amount, api_key_id=api_key_id,
        counts_in_flight=False, key_limits=key_limits, kind=HoldKind.TASK,
    )  # fmt: skip


def task_settle(*, reference: str, charge: int, usage: UsageFacts) -> Settlement:
    """Charge a task that ended (completed, or cancelled while running) what it cost."""
    return holds.hold_settle(reference=reference, charge=charge, usage=usage)


def task_release(*, reference: str) -> bool:
    """A task that failed, or was cancelled before it ran: free."""
    return holds.hold_release(reference=reference)


def record_usage(*, account_id: int, reference: str, charge: int, usage: UsageFacts,
                 at: datetime | None = None) -> Settlement:  # fmt: skip
    """Hold and settle at once: a call made elsewhere (the demo's history). Raises a
    ``BillingError`` if the wallet cannot cover it."""
    holds.hold_place(
        account_id=account_id, reference=reference, amount=charge, api_key_id=usage.api_key_id,
        counts_in_flight=False, at=at,
    )  # fmt: skip
    return holds.hold_settle(reference=reference, charge=charge, usage=usage, at=at)
