"""The task object of SPEC §7, as the API, the SSE stream and callbacks show it."""

from core.money import credits_json
from generation.files import artifact_url
from generation.models import Task, TaskStatus


def _time(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


def task_object(task: Task, base_url: str, artifacts=None) -> dict:
    """``artifacts`` may be passed when already loaded (avoids a query per call)."""
    output = []
    if task.status == TaskStatus.COMPLETED:
        artifacts = list(task.artifacts.all()) if artifacts is None else artifacts
        output = [
            {
                "type": artifact.kind,
                "url": artifact_url(artifact, base_url),
                "mime_type": artifact.mime_type,
                "width": artifact.width,
                "height": artifact.height,
                "duration_seconds": artifact.duration_seconds,
                "expires_at": _time(artifact.expires_at),
            }
            for artifact in artifacts
        ]
    return {
        "task_id": task.public_id,
        "out_task_id": task.out_task_id or None,
        "model": task.model.slug,
        "status": task.status,
        "progress": task.progress,
        "estimated_credits": credits_json(task.estimated_credits),
        "estimated_seconds": task.estimated_seconds,
        "credits_used": credits_json(task.credits_used) if task.is_terminal else None,
        "output": output,
        "error": task.error if task.status == TaskStatus.FAILED else None,
        "created_at": _time(task.created_at),
        "started_at": _time(task.started_at),
        "completed_at": _time(task.completed_at),
    }
