"""Alerts for the gateway's operators, sent to the webhook, Slack channel and email addresses set
in settings (``BYTESPIKE_OPERATOR_ALERT_*``; docs/operations.md#operator-alerts):

- a circuit breaker tripped: each trip, as generation/health.py writes it to the audit log;
- a deployment failing: an error rate at or over ``BYTESPIKE_OPERATOR_ERROR_RATE`` over the last
  ``health.RECENT_MINUTES`` with at least ``MIN_ATTEMPTS`` attempts;
- the task queue: the oldest task waiting for a worker for
  ``BYTESPIKE_OPERATOR_TASK_WAIT_SECONDS``;
- settlement lag: a web process whose answered calls waited
  ``BYTESPIKE_OPERATOR_SETTLEMENT_LAG_SECONDS`` for their batch (its metering engine says so:
  ``billing.signals.settlement_lagging``);
- a wallet whose books ``wallet_problems()`` finds wrong, checked for the accounts whose ledger
  moved since the last check.

Each is an ``OperatorCondition`` by key, whose ``active`` flag flips by a conditional UPDATE: the
flip that sets it sends one alert, the one that clears it one "resolved" message, so a condition
that lasts does not repeat itself and two workers checking at once send it once. Messages go
through ``alerts.delivery.target_send`` (the callbacks' SSRF rules and Standard Webhooks signing)
in Celery jobs retried with backoff; nothing here runs in a request.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from ulid import ULID

from accounts.models import AuditEvent
from alerts.delivery import Message, Target
from alerts.models import OperatorCondition
from billing.invariants import wallet_problems
from billing.models import LedgerEntry
from catalogue.models import Deployment
from generation import health
from generation.selectors import tasks_unfinished

logger = logging.getLogger(__name__)

MIN_ATTEMPTS = 10  # fewer attempts say too little about a deployment's error rate
TRIPS_LOOKBACK = timedelta(hours=1)
WALLETS_PER_CHECK = 200


def operator_targets() -> list[Target]:
    """Where operators' alerts go, from settings (none: nothing is checked or sent)."""
    targets = []
    if settings.BYTESPIKE_OPERATOR_ALERT_WEBHOOK:
        targets.append(
            Target(
                "webhook",
                settings.BYTESPIKE_OPERATOR_ALERT_WEBHOOK,
                settings.BYTESPIKE_OPERATOR_ALERT_WEBHOOK_SECRET,
            )
        )
    if settings.BYTESPIKE_OPERATOR_ALERT_SLACK:
        targets.append(Target("slack", settings.BYTESPIKE_OPERATOR_ALERT_SLACK))
    if settings.BYTESPIKE_OPERATOR_ALERT_EMAILS:
        targets.append(Target("email", settings.BYTESPIKE_OPERATOR_ALERT_EMAILS))
    return targets


def condition_set(key: str, kind: str, *, active: bool, summary: str, data: dict) -> bool:
    """Record whether the condition ``key`` holds; True when this call flipped it (and queued
    the alert, or the message that it is resolved)."""
    now = timezone.now()
    if not active and not OperatorCondition.objects.filter(key=key, active=True).exists():
        return False  # the common case, without a write
    try:
        with transaction.atomic():
            OperatorCondition.objects.get_or_create(key=key, defaults={"kind": kind})
    except IntegrityError:  # another check created it first
        pass
    with transaction.atomic():
        flipped = OperatorCondition.objects.filter(key=key, active=not active).update(
            active=active,
            summary=summary[:500],
            changed_at=now,
            crossings=F("crossings") + (1 if active else 0),
        )
        if flipped:
            _announce(kind, active=active, summary=summary, data={"key": key, **data}, at=now)
    return bool(flipped)


def _announce(kind: str, *, active: bool, summary: str, data: dict, at) -> None:
    from alerts.jobs import operator_alert_send

    event = f"operator.{kind}" if active else f"operator.{kind}.resolved"
    title = summary if active else f"Resolved: {summary}"
    message = {
        "webhook_id": f"msg_{ULID()}",  # the same for every retry of the message
        "payload": {"type": event, "timestamp": at.isoformat(), "data": data},
        "subject": title[:150],
        "text": f"{title}\n\n" + "\n".join(f"{name}: {value}" for name, value in data.items()),
    }
    logger.warning("operator alert %s: %s", event, summary)
    for index in range(len(operator_targets())):
        operator_alert_send.delay_on_commit(index, message)


def operator_send(index: int, message: dict) -> bool:
    """One attempt to send ``message`` to the ``index``-th target (the job retries a failure);
    the target is read from settings here, so no secret travels in the queue."""
    from alerts.delivery import target_send

    targets = operator_targets()
    if index >= len(targets):
        return True  # settings changed since: nowhere to send it
    result = target_send(targets[index], Message(**message))
    if not result.ok:
        logger.warning("operator alert to a %s failed: %s", targets[index].kind, result.error)
    return result.ok


# --- The checks beat runs ------------------------------------------------------------------------


def operator_checks() -> dict[str, int]:
    """Trips, failing deployments and the task queue; how many conditions each flipped."""
    if not operator_targets():
        return {}
    return {
        "trips": _trips(),
        "failing": _failing_deployments(),
        "task_queue": _task_queue(),
    }


def _trips() -> int:
    events = list(
        AuditEvent.objects.filter(
            action="channel.tripped", created_at__gte=timezone.now() - TRIPS_LOOKBACK
        ).order_by("id")
    )
    known = set(
        OperatorCondition.objects.filter(key__in=[f"trip:{e.pk}" for e in events]).values_list(
            "key", flat=True
        )
    )
    flipped = 0
    for event in events:
        if f"trip:{event.pk}" in known:
            continue
        model = event.details.get("model", "")
        summary = f"Circuit breaker opened: {model} on {event.target}"
        flipped += condition_set(
            f"trip:{event.pk}", "breaker_tripped", active=True, summary=summary,
            data={"channel": event.target, "model": model,
                  "reason": event.details.get("reason", ""),
                  "at": event.created_at.isoformat()},
        )  # fmt: skip
    return flipped


def _failing_deployments() -> int:
    deployments = list(
        Deployment.objects.filter(is_enabled=True, channel__is_enabled=True).select_related(
            "model", "channel"
        )
    )
    stats = health.deployment_stats(d.pk for d in deployments)
    threshold = settings.BYTESPIKE_OPERATOR_ERROR_RATE
    flipped = 0
    for deployment in deployments:
        found = stats[deployment.pk]
        failing = found.calls >= MIN_ATTEMPTS and (found.error_rate or 0) >= threshold
        name = f"{deployment.model.slug} on {deployment.channel.slug}"
        flipped += condition_set(
            f"failing:{deployment.pk}", "deployment_failing", active=failing,
            summary=f"Deployment failing: {name}, {found.failures} of {found.calls} attempts "
            f"failed in the last {health.RECENT_MINUTES} minutes",
            data={"channel": deployment.channel.slug, "model": deployment.model.slug,
                  "attempts": found.calls, "failures": found.failures},
        )  # fmt: skip
    return flipped


def _task_queue() -> int:
    waiting, oldest = tasks_unfinished()["pending"]
    limit = settings.BYTESPIKE_OPERATOR_TASK_WAIT_SECONDS
    flipped = condition_set(
        "task-queue", "task_queue", active=waiting > 0 and oldest >= limit,
        summary=f"Task queue: {waiting} tasks waiting, the oldest for {oldest:.0f} s",
        data={"waiting": waiting, "oldest_seconds": round(oldest), "threshold_seconds": limit},
    )  # fmt: skip
    return int(flipped)


def wallets_check() -> int:
    """``wallet_problems()`` of the accounts whose ledger moved in the last two periods (sweeps
    overlap: an account is checked twice rather than missed); how many conditions flipped."""
    if not operator_targets():
        return 0
    since = timezone.now() - timedelta(seconds=2 * settings.BYTESPIKE_OPERATOR_WALLET_CHECK_SECONDS)
    accounts = list(
        LedgerEntry.objects.filter(created_at__gte=since)
        .order_by()
        .values_list("account_id", flat=True)
        .distinct()[:WALLETS_PER_CHECK]
    )
    flipped = 0
    for account_id in accounts:
        problems = wallet_problems(account_id)
        flipped += condition_set(
            f"wallet:{account_id}", "wallet_problem", active=bool(problems),
            summary=f"Wallet books wrong for account {account_id}: {'; '.join(problems)}",
            data={"account_id": account_id, "problems": problems},
        )  # fmt: skip
    return flipped


def settlement_lag_changed(sender, owner: str, lagging: bool, seconds: float, **_) -> None:
    """A web process's metering engine saw its batches lag (or recover)."""
    condition_set(
        f"settlement-lag:{owner}", "settlement_lag", active=lagging,
        summary=f"Settlement lag: answered calls of {owner} waited {seconds:.1f} s for their batch",
        data={"process": owner, "seconds": round(seconds, 3),
              "threshold_seconds": settings.BYTESPIKE_OPERATOR_SETTLEMENT_LAG_SECONDS},
    )  # fmt: skip
