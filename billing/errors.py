"""Refusals of billing: ApiErrors with an HTTP status, an error code and a message for the
caller, and for a reached rolling limit its Retry-After and X-RateLimit-* headers. Only the edge
renders them, in the caller's protocol."""

import time

from core.errors import ApiError


class BillingError(ApiError):
    """A refusal the caller sees: HTTP status, error code and a message."""

    status = 400
    code = "invalid_param"

    def __init__(self, message: str):
        super().__init__(self.status, self.code, message)


class InsufficientBalanceError(BillingError):
    status = 402
    code = "insufficient_balance"


class QuotaExceededError(BillingError):
    status = 402
    code = "quota_exceeded"


class BudgetExceededError(BillingError):
    status = 402
    code = "budget_exceeded"


class RateLimitExceededError(BillingError):
    """A rolling limit is reached; ``headroom`` says which, and when it frees up."""

    status = 429
    code = "rate_limit_exceeded"
    headroom = None  # billing.metering.limits.Headroom

    def with_limit(self, headroom) -> "RateLimitExceededError":
        """Say which limit refused, and when it frees up: Retry-After and the limit's
        X-RateLimit-* set (a quota or a wallet has none: waiting does not help)."""
        from billing.metering.headers import rate_limit_headers  # it imports this module

        self.headroom = headroom
        retry = max(headroom.reset - int(time.time()), 1)
        headers = rate_limit_headers(headroom.name, headroom.limit, 0, headroom.reset)
        self.headers = {"Retry-After": str(retry), **headers}
        return self

    @property
    def reset(self) -> int | None:
        """Unix seconds when the limit frees up."""
        return self.headroom.reset if self.headroom else None


class ConcurrencyLimitError(RateLimitExceededError):
    code = "concurrency_limit"


class RedemptionError(BillingError):
    code = "invalid_code"
