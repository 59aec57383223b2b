"""Failover: a call goes to its model's deployments in attempt order until one answers.

An attempt that fails before anything reaches the caller (connect error, timeout, 429, 5xx,
an answer that cannot be read) moves on to the next deployment, within the model's retry budget
(``max_attempts``) and deadline (``failover_deadline_seconds``, counted from the call's start).
A 400 is the request's own fault and is never retried. Each deployment has a circuit breaker
(breakers.py): an open one is skipped, so a model whose every deployment is down is refused at
once with a 503, not after a timeout per request. Failed attempts cost the caller nothing: the
call is billed once, for the attempt that answered. Every attempt's outcome and latency go to the
deployment's statistics (health.py: memory only, written in the background).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from core import metrics
from generation import health
from generation.breakers import breakers
from generation.protocols.base import UpstreamFormatError
from generation.providers import UpstreamError
from generation.routing import Target, Upstream, attempt_order

logger = logging.getLogger(__name__)

# Names the channel that served a call (its slug: never a URL or a key).
UPSTREAM_HEADER = "X-ByteSpike-Upstream"


class Unreadable(UpstreamError):
    """An upstream answer that could not be understood (counts against its deployment)."""

    def __init__(self) -> None:
        super().__init__(502, "upstream_error", "The upstream answer could not be read.")


async def first_answer[T](
    target: Target, attempt: Callable[[Upstream], Awaitable[T]], *, started: float
) -> tuple[Upstream, T]:
    """The first deployment's answer to ``attempt``; else the last attempt's error, or a 503 if
    no deployment could be tried. ``started`` is the call's ``time.monotonic()`` start."""
    model = target.model
    tried = 0
    last: UpstreamError | None = None
    for upstream in attempt_order(target.upstreams):
        if tried >= model.max_attempts:
            break
        if tried and time.monotonic() - started > model.failover_deadline_seconds:
            break
        if not await breakers.acquire(upstream.deployment_id):
            continue
        tried += 1
        attempt_started = time.monotonic()
        try:
            try:
                answer = await metrics.upstream_attempt(
                    upstream.name, _bounded(attempt(upstream), model.attempt_timeout_seconds)
                )
            except UpstreamFormatError:
                raise Unreadable() from None
        except UpstreamError as error:
            # A refused request (400) is the upstream answering, so it counts as ok.
            health.record(
                upstream.deployment_id, ok=error.caller_fault, latency_ms=_ms(attempt_started)
            )
            if error.caller_fault:
                # The upstream is fine; the request is not. Not a failure of the deployment.
                await breakers.succeeded(upstream.deployment_id)
                raise
            # (A cancelled attempt reports nothing: a probe it was expires in its breaker.)
            await breakers.failed(upstream.deployment_id, _seconds(error.retry_after))
            logger.info(
                "%s on %s failed (%s), attempt %d", model.slug, upstream.name, error.code, tried
            )
            last = error
            continue
        health.record(upstream.deployment_id, ok=True, latency_ms=_ms(attempt_started))
        await breakers.succeeded(upstream.deployment_id)
        return upstream, answer
    if last is not None:
        raise last
    raise all_down(target)


def all_down(target: Target) -> UpstreamError:
    """Every deployment of the model is open (or disabled): refused at once, free."""
    wait = breakers.retry_after(u.deployment_id for u in target.upstreams)
    retry_after = str(max(1, round(wait))) if wait else "10"
    error = UpstreamError(
        503,
        "upstream_unavailable",
        f"No upstream for '{target.model.slug}' is available right now; retry shortly.",
        retry_after,
    )
    error.headers["Retry-After"] = retry_after
    return error


async def _bounded(attempt: Awaitable, seconds: int):
    """The attempt, given up as an upstream timeout after ``seconds`` (0: no bound of ours)."""
    if not seconds:
        return await attempt
    try:
        async with asyncio.timeout(seconds):
            return await attempt
    except TimeoutError:
        raise UpstreamError(504, "upstream_timeout", "The upstream provider timed out.") from None


def _ms(started: float) -> int:
    """Milliseconds since ``started`` (a ``time.monotonic()``)."""
    return round((time.monotonic() - started) * 1000)


def _seconds(retry_after: str | None) -> float | None:
    """An upstream's Retry-After, when it is a number of seconds (an HTTP date is ignored)."""
    try:
        return float(retry_after) if retry_after else None
    except ValueError:
        return None
