"""Refusals of billing: an HTTP status, an error code and a message for the caller. Only the edge
renders them, in the caller's protocol."""


class BillingError(Exception):
    """A refusal the caller sees: HTTP status, error code and a message."""

    status = 400
    code = "invalid_param"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InsufficientBalanceError(BillingError):
    status = 402
    code = "insufficient_balance"


class QuotaExceededError(BillingError):
    status = 402
    code = "quota_exceeded"


class RateLimitExceededError(BillingError):
    """A rolling limit is reached; ``headroom`` says which, and when it frees up."""

    status = 429
    code = "rate_limit_exceeded"
    headroom = None  # billing.metering.limits.Headroom

    def with_limit(self, headroom) -> "RateLimitExceededError":
        self.headroom = headroom
        return self

    @property
    def reset(self) -> int | None:
        """Unix seconds when the limit frees up."""
        return self.headroom.reset if self.headroom else None


class ConcurrencyLimitError(RateLimitExceededError):
    code = "concurrency_limit"


class RedemptionError(BillingError):
    code = "invalid_code"
