"""Reads of the catalogue."""

import time

from django.db.models import QuerySet

from catalogue.models import AIModel, RoutingGroup

SLUGS_TTL_SECONDS = 60.0


def models_in_group(group_id: int) -> QuerySet[AIModel]:
    return AIModel.objects.filter(groups__id=group_id, is_active=True).order_by("family", "slug")


class Slugs:
    """Every model's and routing group's slug by id, for what names them by id only (metrics'
    labels). The catalogue is small and its slugs rarely change: it is read whole, again when
    an id is new to it or a minute has passed (a renamed slug is seen within that minute)."""

    def __init__(self):
        self._expires = 0.0
        self._models: dict[int, str] = {}
        self._groups: dict[int, str] = {}

    def of(self, model_ids, group_ids) -> tuple[dict[int, str], dict[int, str]]:
        """The slugs of models and groups by id (a group id may be None: no group)."""
        known = set(model_ids) <= self._models.keys() and set(group_ids) - {None} <= (
            self._groups.keys()
        )
        if not known or self._expires < time.monotonic():
            self._models = dict(AIModel.objects.values_list("id", "slug"))
            self._groups = dict(RoutingGroup.objects.values_list("id", "slug"))
            self._expires = time.monotonic() + SLUGS_TTL_SECONDS
        return self._models, self._groups

    def forget(self) -> None:
        """Read afresh next time (tests: ids repeat after a rollback)."""
        self._expires = 0.0
        self._models, self._groups = {}, {}


slugs = Slugs()
