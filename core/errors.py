"""The one error family every layer raises: a refusal the caller sees, with its HTTP status, our
error code, a message, the offending parameter and any headers (Retry-After, X-RateLimit-*).
Domain code raises it (or a subclass that carries more); only the edge renders it, in the
caller's protocol (generation/dataplane/errors.py)."""


class ApiError(Exception):
    """A refused or failed request: HTTP status, error code, message, param and headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        param: str | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers: dict = dict(headers or {})
