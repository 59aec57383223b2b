"""Sending one alert message to one target: an email, a signed webhook or a Slack incoming
webhook. Nothing here reads the database, so an operator channel configured in settings can
send through ``target_send`` as well as an account's channels do.

Webhooks and Slack go through the task callbacks' machinery (generation/callbacks/): the URL
is checked against the SSRF rules again before every attempt (``callback_target``, so DNS
rebinding since the channel was saved cannot reach an internal address), the connection is
pinned to the checked addresses, no redirect is followed, one deadline bounds the attempt.
Webhooks are signed the Standard Webhooks way (``signing.webhook_headers``) with the
channel's own secret.
"""

import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from accounts.webhooks import WebhookSecretError, decode_secret
from core.mail import send_text_mail
from generation.callbacks.signing import USER_AGENT, payload_body, webhook_headers
from generation.callbacks.targets import CallbackURLError, callback_target, exempt_host
from generation.callbacks.transport import SendResult, callback_send, short_error

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 10
SLACK_HOSTS = ("hooks.slack.com", "hooks.slack-gov.com")
_SLACK_PATH = re.compile(r"/services/[A-Za-z0-9_/-]+")
URL_NAME = "The URL"


class TargetError(ValueError):
    """A channel's target we will not send to; the message names the problem for a form."""


@dataclass(frozen=True)
class Target:
    """Where a message goes: ``kind`` email|webhook|slack, ``address`` the addresses or URL,
    ``secret`` the ``whsec_`` secret a webhook is signed with."""

    kind: str
    address: str
    secret: str = ""


@dataclass(frozen=True)
class Message:
    """One alert, as every kind of channel gets it: ``payload`` is the webhook's JSON body
    (``type``, ``timestamp``, ``data``), ``webhook_id`` is fixed across retries."""

    webhook_id: str
    payload: dict
    subject: str
    text: str


# --- Checking targets (when a channel is saved, and before every attempt) ----------------------


def email_recipients(value: str) -> list[str]:
    """The addresses of an email channel: comma separated, each valid, at most ten."""
    addresses = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    if not addresses:
        raise TargetError("Enter at least one email address.")
    if len(addresses) > MAX_RECIPIENTS:
        raise TargetError(f"Enter at most {MAX_RECIPIENTS} email addresses.")
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            raise TargetError(f"{address!r} is not a valid email address.") from None
    return list(dict.fromkeys(addresses))


def _slack_shape(url: str) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if exempt_host(host):
        return  # a local receiver, in development and tests
    if parts.scheme != "https" or host not in SLACK_HOSTS or not _SLACK_PATH.fullmatch(parts.path):
        raise TargetError(
            "A Slack incoming webhook URL looks like https://hooks.slack.com/services/T…/B…/…"
        )


def target_check(kind: str, address: str):
    """The checked target (recipients, or the callback target with its addresses), or
    ``TargetError``: the same SSRF rules as task callbacks for URLs."""
    if kind == "email":
        return email_recipients(address)
    if kind == "slack":
        _slack_shape(address)
    try:
        return callback_target(address, name=URL_NAME)
    except CallbackURLError as error:
        raise TargetError(str(error)) from None


# --- Sending ---------------------------------------------------------------------------------


def _slack_body(message: Message) -> dict:
    return {
        "text": message.text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": message.text[:2900]}},
        ],
    }


def _send_email(target: Target, message: Message) -> SendResult:
    recipients = email_recipients(target.address)
    try:
        send_text_mail(
            subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{message.subject}",
            message=message.text,
            from_email=None,
            recipient_list=recipients,
        )
    except Exception as error:  # an SMTP server's refusal or absence: a failed attempt
        logger.info("alert email %s failed: %s", message.webhook_id, type(error).__name__)
        return SendResult(error=short_error(f"The mail server refused it: {error}"))
    return SendResult(status_code=250)


def target_send(target: Target, message: Message, *, timeout: float | None = None) -> SendResult:
    """One attempt; refusals (a URL that no longer passes the rules, an unusable secret) are
    failed results too, so they are recorded and retried like a receiver that is down."""
    timeout = timeout or settings.BYTESPIKE_CALLBACK_TIMEOUT_SECONDS
    started = time.monotonic()
    try:
        checked = target_check(target.kind, target.address)
        if target.kind == "email":
            result = _send_email(target, message)
        else:
            if target.kind == "webhook":
                body = payload_body(message.payload)
                headers = webhook_headers(
                    key=decode_secret(target.secret),
                    webhook_id=message.webhook_id,
                    timestamp=int(time.time()),
                    body=body,
                )
            else:
                body = payload_body(_slack_body(message))
                headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
            result = callback_send(checked, headers=headers, body=body, timeout=timeout)
    except (TargetError, WebhookSecretError) as error:
        result = SendResult(error=short_error(f"Not sent: {error}"))
    result.duration_ms = round((time.monotonic() - started) * 1000)
    return result
