"""GET /v1/models and /v1beta/models: the models the calling key may call (its group's, narrowed
to its allowlist if it has one), in the caller's protocol's list shape (OpenAI by default,
Anthropic when `anthropic-version` is sent, Gemini under /v1beta)."""

from django.http import JsonResponse

from catalogue.models import AIModel, Family, RoutingGroup
from catalogue.pricing import price_card
from generation.dataplane.base import dataplane_view
from generation.dataplane.errors import Protocol
from generation.routing import group_listing
from keys.auth import KeyPrincipal


async def _group_and_models(
    principal: KeyPrincipal,
) -> tuple[RoutingGroup, list[tuple[str, AIModel]]]:
    """The key's group, and the names the key may call with the model each stands for: the
    group's models and then its aliases, narrowed to the key's allowlist if it has one."""
    group, models, aliases = await group_listing(principal.group_id)
    named = [(model.slug, model) for model in models] + aliases
    return group, [(name, model) for name, model in named if principal.may_call(model.slug)]


def _openai_entry(name: str, model: AIModel, group: RoutingGroup) -> dict:
    entry = {
        "id": name,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": "bytespike",
        "display_name": model.display_name,
        "family": model.family,
        "capabilities": model.capabilities,
        "context_window": model.context_window or None,
        "max_output_tokens": model.max_output_tokens or None,
        "pricing": price_card(model, group.rate_multiplier),
        "group": group.slug,
    }
    if name != model.slug:
        entry["alias_of"] = model.slug
    return entry


def _anthropic_entry(name: str, model: AIModel) -> dict:
    return {
        "type": "model",
        "id": name,
        "display_name": model.display_name,
        "created_at": model.created_at.isoformat().replace("+00:00", "Z"),
    }


def _gemini_entry(name: str, model: AIModel) -> dict:
    methods = (
        ["generateContent", "streamGenerateContent", "countTokens"]
        if model.family == Family.TEXT
        else ["predict", "predictLongRunning"]
    )
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": model.display_name,
        "description": model.description,
        "inputTokenLimit": model.context_window,
        "outputTokenLimit": model.max_output_tokens,
        "supportedGenerationMethods": methods,
    }


@dataplane_view(methods=("GET",))
async def models_list(request, principal: KeyPrincipal):
    group, models = await _group_and_models(principal)
    if "anthropic-version" in request.headers:
        data = [_anthropic_entry(name, model) for name, model in models]
        return JsonResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )
    data = [_openai_entry(name, model, group) for name, model in models]
    return JsonResponse({"object": "list", "data": data})


@dataplane_view(Protocol.GEMINI, methods=("GET",))
async def gemini_models_list(request, principal: KeyPrincipal):
    _, models = await _group_and_models(principal)
    return JsonResponse({"models": [_gemini_entry(name, model) for name, model in models]})
