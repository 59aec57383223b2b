"""Reads of the model catalogue."""

from django.db.models import QuerySet

from generation.models import AIModel


def models_in_group(group_id: int) -> QuerySet[AIModel]:
    return AIModel.objects.filter(groups__id=group_id, is_active=True).order_by("family", "slug")


def task_for_account(*, account_id: int, task_id: str = "", out_task_id: str = ""):
    """The account's task by public id or out_task_id; None for anyone else's (a 404)."""
    from generation.models import Task

    tasks = Task.objects.select_related("model", "api_key").filter(account_id=account_id)
    if task_id:
        return tasks.filter(public_id=task_id).first()
    if out_task_id:
        return tasks.filter(out_task_id=out_task_id).first()
    return None
