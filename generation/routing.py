"""Which model a data-plane request names, as seen from the calling key's group and allowlist,
and the deployments that may serve it.

The catalogue changes rarely and every request needs it, so each process keeps what it looked
up for a few seconds: a staff edit is seen everywhere within ``CATALOGUE_TTL_SECONDS``. A key's
allowlist is the key's own (its principal carries it), so it is checked outside that cache.

A model's deployments are tried by ``attempt_order``: the highest priority tier first, spread by
weight inside a tier (a weight of 0 only after the rest of its tier), then the next tier.
Failover itself (which failures move on, the budget, the breakers) is in failover.py.
"""

import random
import time
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby

from catalogue.models import AIModel, Deployment, ModelAlias, RoutingGroup
from catalogue.selectors import models_in_group
from core import metrics
from core.db import run_db
from core.errors import ApiError
from generation.providers import ChannelRoute
from keys.auth import KeyPrincipal

CATALOGUE_TTL_SECONDS = 10.0


@dataclass(frozen=True)
class Upstream:
    """One deployment of a model, as a call needs it."""

    deployment_id: int
    name: str  # the channel's slug: the X-ByteSpike-Upstream header, never a URL or a key
    route: ChannelRoute
    upstream_model: str
    priority: int
    weight: int


@dataclass(frozen=True)
class Target:
    model: AIModel
    multiplier: Decimal
    # Enabled deployments on enabled channels, highest priority first.
    upstreams: tuple[Upstream, ...]


def attempt_order(upstreams: tuple[Upstream, ...], rng: random.Random = random) -> list[Upstream]:
    """Tiers by priority, highest first; inside a tier a weighted random order (each drawn with
    probability weight / remaining weight: Efraimidis-Spirakis keys), weight 0 last."""
    order: list[Upstream] = []
    for _, tier in groupby(upstreams, key=lambda u: u.priority):
        tier = list(tier)
        weighted = sorted(
            (u for u in tier if u.weight > 0),
            key=lambda u: rng.random() ** (1 / u.weight),
            reverse=True,
        )
        order += weighted + [u for u in tier if u.weight == 0]
    return order


_cache: dict[tuple[int, str], tuple[float, Target | ApiError]] = {}


async def resolve_model(group_id: int, slug: str) -> Target:
    """The active model ``slug`` if the group has it; else 400 model_not_found or 403."""
    key = (group_id, slug)
    hit = _cache.get(key)
    if hit is None or hit[0] < time.monotonic():
        hit = (time.monotonic() + CATALOGUE_TTL_SECONDS, await _lookup(group_id, slug))
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[key] = hit
    if isinstance(hit[1], ApiError):
        raise ApiError(hit[1].status, hit[1].code, hit[1].message, hit[1].param)
    return hit[1]


async def resolve_model_for(principal: KeyPrincipal, slug: str) -> Target:
    """``resolve_model`` for the key of ``principal``: a model its allowlist leaves out is 403
    model_not_allowed (an unknown model is still 400 model_not_found)."""
    target = await resolve_model(principal.group_id, slug)
    metrics.model_resolved(target.model.slug)
    # The allowlist names models; an alias is allowed when the model it stands for is.
    if not principal.may_call(target.model.slug):
        raise model_not_allowed(slug)
    return target


def model_not_allowed(slug: str) -> ApiError:
    """The refusal of a model the key's allowlist leaves out (the playground's forms show it)."""
    return ApiError(403, "model_not_allowed", f"This key may not call the model '{slug}'.", "model")


async def _lookup(group_id: int, slug: str) -> Target | ApiError:
    return await run_db(_find, group_id, slug)


def _find(group_id: int, slug: str) -> Target | ApiError:
    model = AIModel.objects.filter(slug=slug, is_active=True).first()
    if model is None:
        model = _aliased(group_id, slug)
    if model is None:
        return ApiError(400, "model_not_found", f"The model '{slug}' does not exist.", "model")
    group = RoutingGroup.objects.filter(pk=group_id, models=model).first()
    if group is None:
        return ApiError(
            403,
            "model_not_in_group",
            f"This key's routing group does not include the model '{slug}'.",
            "model",
        )
    return Target(model, group.rate_multiplier, upstreams_of(model))


def upstreams_of(model: AIModel, *, enabled_only: bool = True) -> tuple[Upstream, ...]:
    """The model's deployments, highest priority first (only those that may take calls, unless
    a task already submitted to a disabled one needs it back)."""
    deployments = Deployment.objects.filter(model=model).select_related("channel")
    if enabled_only:
        deployments = deployments.filter(is_enabled=True, channel__is_enabled=True)
    return tuple(
        Upstream(
            deployment_id=d.pk,
            name=d.channel.slug,
            route=ChannelRoute.of(d.channel),
            upstream_model=d.upstream_model,
            priority=d.priority,
            weight=d.weight,
        )
        for d in deployments.order_by("-priority", "id")
    )


def _aliased(group_id: int, name: str) -> AIModel | None:
    """The active model the group's alias ``name`` stands for, following aliases of aliases
    (the admin refuses cycles; the hop limit is the backstop)."""
    aliases = dict(ModelAlias.objects.filter(group_id=group_id).values_list("alias", "target"))
    for _ in range(ModelAlias.MAX_ALIAS_HOPS):
        if name not in aliases:
            return None
        name = aliases[name]
        model = AIModel.objects.filter(slug=name, is_active=True).first()
        if model is not None:
            return model
    return None


def _listing_of(group_id: int) -> tuple:
    """The group, its active models, and its aliases as (alias, model) pairs."""
    models = list(models_in_group(group_id))
    by_slug = {model.slug: model for model in models}
    aliases = []
    for alias in ModelAlias.objects.filter(group_id=group_id).values_list("alias", flat=True):
        model = _aliased(group_id, alias)
        if model is not None and model.slug in by_slug:
            aliases.append((alias, by_slug[model.slug]))
    return RoutingGroup.objects.get(pk=group_id), models, aliases


def forget() -> None:
    """Drop what this process remembers (tests, and after staff edits in this process)."""
    _cache.clear()
    _listing.clear()


_listing: dict[int, tuple[float, tuple]] = {}


async def group_listing(group_id: int):
    """The group, its active models and its aliases (for /v1/models), remembered like
    resolve_model."""
    hit = _listing.get(group_id)
    if hit is None or hit[0] < time.monotonic():
        hit = (time.monotonic() + CATALOGUE_TTL_SECONDS, await run_db(_listing_of, group_id))
        _listing[group_id] = hit
    return hit[1]
