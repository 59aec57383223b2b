"""What staff see of an upstream channel and do to it: its health (each deployment's breaker and
recent attempts), a test call, disabling and enabling it. The console's channel page and the
Channel admin both go through these.

A test call is one small chat request (one output token) sent now to the channel, the way the
text routes send it (the channel's wire format, its URL and secret), to one of its text
deployments. It bypasses routing and the breakers, is not counted in the attempt statistics and
is billed to no one. What it shows of a failure is the message callers would get (mapped,
without the channel's URL or secret).

Disabling a channel takes its deployments out of routing: at once in this process, in the others
within ``routing.CATALOGUE_TTL_SECONDS``. Both changes are audited (no account: the channel
serves every account) with the staff member who made them.
"""

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from asgiref.sync import async_to_sync
from django.db import transaction

from accounts.models import User
from accounts.services import audit_record
from catalogue.models import Channel, Deployment, Family
from generation import routing
from generation.breakers import BreakerState, breakers
from generation.dataplane.text import OPENAI_CHAT, upstream_codec
from generation.failover import Unreadable
from generation.health import Stats, deployment_stats
from generation.protocols.base import UpstreamFormatError
from generation.protocols.internal import ChatRequest, Message, TextPart
from generation.providers import ChannelRoute, UpstreamError, send_json

# --- Health ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentHealth:
    deployment: Deployment
    breaker: BreakerState
    stats: Stats

    @property
    def open_until(self) -> datetime | None:
        if self.breaker.open_until is None:
            return None
        return datetime.fromtimestamp(self.breaker.open_until, UTC)


@dataclass(frozen=True)
class ChannelHealth:
    channel: Channel
    deployments: tuple[DeploymentHealth, ...]
    stats: Stats  # its deployments' attempts, summed

    @property
    def breakers_text(self) -> str:
        """'2 closed', '1 open, 1 closed': how many of its deployments' breakers are in each
        state."""
        counts: dict[str, int] = {}
        for item in self.deployments:
            counts[item.breaker.state] = counts.get(item.breaker.state, 0) + 1
        return ", ".join(
            f"{counts[state]} {state.replace('_', '-')}"
            for state in ("open", "half_open", "closed")
            if state in counts
        )


def channels_health(channels: Iterable[Channel]) -> list[ChannelHealth]:
    """Each channel's deployments with their breakers (shared state, with Redis) and their
    attempts over the last ``health.RECENT_MINUTES``."""
    channels = list(channels)
    deployments = list(
        Deployment.objects.filter(channel__in=channels)
        .select_related("model")
        .order_by("model__slug", "-priority", "id")
    )
    ids = [d.pk for d in deployments]
    stats = deployment_stats(ids)
    states = async_to_sync(breakers.snapshot)(ids)
    by_channel: dict[int, list[DeploymentHealth]] = {channel.pk: [] for channel in channels}
    for d in deployments:
        by_channel[d.channel_id].append(DeploymentHealth(d, states[d.pk], stats[d.pk]))
    return [
        ChannelHealth(
            channel,
            tuple(by_channel[channel.pk]),
            sum((item.stats for item in by_channel[channel.pk]), Stats()),
        )
        for channel in channels
    ]


# --- Test call ---------------------------------------------------------------------------------

PROMPT = "Reply with one word: ok."


@dataclass(frozen=True)
class ChannelTestResult:
    ok: bool
    status: int  # 200, or the status a caller would have been answered
    latency_ms: int
    upstream_model: str
    message: str = ""  # why it failed, as callers are told


def channel_test(channel: Channel) -> ChannelTestResult | None:
    """Send one 1-token chat request to the channel now; None if it serves no text model (an
    image or video call would cost real money and minutes: no test call for those)."""
    deployment = (
        channel.deployments.filter(model__family=Family.TEXT)
        .order_by("-is_enabled", "-priority", "id")
        .first()
    )
    if deployment is None:
        return None
    return async_to_sync(_call)(ChannelRoute.of(channel), deployment.upstream_model)


async def _call(route: ChannelRoute, upstream_model: str) -> ChannelTestResult:
    codec = upstream_codec(route.kind, OPENAI_CHAT)
    chat = ChatRequest(
        model=upstream_model, messages=[Message("user", [TextPart(PROMPT)])], max_tokens=1
    )
    started = time.monotonic()
    try:
        try:
            codec.parse_response(
                await send_json(route, codec.upstream_request(chat, upstream_model))
            )
        except UpstreamFormatError:
            raise Unreadable() from None
    except UpstreamError as error:
        return ChannelTestResult(False, error.status, _ms(started), upstream_model, error.message)
    return ChannelTestResult(True, 200, _ms(started), upstream_model)


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


# --- Disable and enable ------------------------------------------------------------------------


def channel_set_enabled(channel: Channel, *, enabled: bool, actor: User) -> bool:
    """Enable or disable the channel, audited with ``actor``; False if it already was."""
    with transaction.atomic():
        changed = Channel.objects.filter(pk=channel.pk, is_enabled=not enabled).update(
            is_enabled=enabled
        )
        if changed:
            audit_record(
                account=None,
                actor=actor,
                action="channel.enabled" if enabled else "channel.disabled",
                target=channel.slug,
            )
    channel.is_enabled = enabled
    routing.forget()  # this process routes by it at once; the others within the catalogue TTL
    return bool(changed)
