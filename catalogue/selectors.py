"""Reads of the catalogue."""

from django.db.models import QuerySet

from catalogue.models import AIModel


def models_in_group(group_id: int) -> QuerySet[AIModel]:
    return AIModel.objects.filter(groups__id=group_id, is_active=True).order_by("family", "slug")
