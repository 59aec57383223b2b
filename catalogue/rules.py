"""Checks a catalogue configuration must pass before it is saved (the admin runs them): what
would otherwise only show as failed calls, found while the operator is still on the form."""

from collections import defaultdict

from django.core.exceptions import ValidationError

from catalogue.models import AIModel, Family, ModelAlias


def check_deployments(family: str, deployments: list[dict]) -> None:
    """``deployments``: the model's deployments as the form has them (``channel``, ``priority``,
    ``weight``, ``is_enabled``). Refuses a channel that cannot serve the model's family, and a
    priority tier in which no enabled deployment has a weight above 0."""
    errors = []
    tiers: dict[int, int] = defaultdict(int)
    for deployment in deployments:
        channel = deployment["channel"]
        if not channel.serves(family):
            errors.append(
                f"The channel '{channel.slug}' speaks {channel.get_kind_display()}, which cannot "
                f"serve {Family(family).label.lower()} models; use an OpenAI or OpenAI-compatible "
                "channel, or the sandbox."
            )
        if deployment["is_enabled"]:
            tiers[deployment["priority"]] += deployment["weight"]
    for priority, weight in sorted(tiers.items(), reverse=True):
        if weight == 0:
            errors.append(
                f"Every deployment in priority tier {priority} has a weight of 0, so none of "
                "them would ever be chosen first; give at least one a weight above 0."
            )
    if errors:
        raise ValidationError(errors)


def check_aliases(aliases: dict[str, str]) -> None:
    """A group's aliases (alias -> target): none may hide a model's own name, and following each
    must reach a model of the catalogue within ``ModelAlias.MAX_ALIAS_HOPS`` hops without
    coming back to itself."""
    slugs = set(
        AIModel.objects.filter(slug__in={*aliases, *aliases.values()}).values_list(
            "slug", flat=True
        )
    )
    errors = []
    for alias in aliases:
        if alias in slugs:
            errors.append(f"'{alias}' is a model's own name; an alias cannot hide it.")
            continue
        seen, name = [alias], aliases[alias]
        while name in aliases and name not in slugs and name not in seen:
            seen.append(name)
            name = aliases[name]
        if name in seen:
            errors.append("These aliases go round in a circle: " + " -> ".join([*seen, name]) + ".")
        elif name not in slugs:
            errors.append(f"'{name}' (the target of '{seen[-1]}') is neither a model nor an alias.")
        elif len(seen) > ModelAlias.MAX_ALIAS_HOPS:
            errors.append(
                f"'{alias}' reaches a model only after {len(seen)} aliases; at most "
                f"{ModelAlias.MAX_ALIAS_HOPS} are followed."
            )
    if errors:
        raise ValidationError(errors)
