"""Which model a data-plane request names, as seen from the calling key's group and allowlist.

The catalogue changes rarely and every request needs it, so each process keeps what it looked
up for a few seconds: a staff edit is seen everywhere within ``CATALOGUE_TTL_SECONDS``. A key's
allowlist is the key's own (its principal carries it), so it is checked outside that cache.
"""

import time
from dataclasses import dataclass
from decimal import Decimal

from catalogue.models import AIModel, RoutingGroup
from catalogue.selectors import models_in_group
from core.db import run_db
from core.errors import ApiError
from generation.providers import ChannelRoute
from keys.auth import KeyPrincipal

CATALOGUE_TTL_SECONDS = 10.0


@dataclass(frozen=True)
class Target:
    model: AIModel
    multiplier: Decimal
    route: ChannelRoute


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
    if not principal.may_call(slug):
        raise model_not_allowed(slug)
    return target


def model_not_allowed(slug: str) -> ApiError:
    """The refusal of a model the key's allowlist leaves out (the playground's forms show it)."""
    return ApiError(403, "model_not_allowed", f"This key may not call the model '{slug}'.", "model")


async def _lookup(group_id: int, slug: str) -> Target | ApiError:
    return await run_db(_find, group_id, slug)


def _find(group_id: int, slug: str) -> Target | ApiError:
    model = AIModel.objects.select_related("channel").filter(slug=slug, is_active=True).first()
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
    return Target(model, group.rate_multiplier, ChannelRoute.of(model.channel))


def _listing_of(group_id: int) -> tuple:
    return RoutingGroup.objects.get(pk=group_id), list(models_in_group(group_id))


def forget() -> None:
    """Drop what this process remembers (tests, and after staff edits in this process)."""
    _cache.clear()
    _listing.clear()


_listing: dict[int, tuple[float, tuple]] = {}


async def group_listing(group_id: int):
    """The group and its active models (for /v1/models), remembered like resolve_model."""
    hit = _listing.get(group_id)
    if hit is None or hit[0] < time.monotonic():
        hit = (time.monotonic() + CATALOGUE_TTL_SECONDS, await run_db(_listing_of, group_id))
        _listing[group_id] = hit
    return hit[1]
