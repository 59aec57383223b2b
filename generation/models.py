"""Async tasks, the files they produce, the callbacks that tell apps they finished, and the
upstream attempts each deployment saw, minute by minute."""

from django.db import models
from django.utils import timezone

from catalogue.models import AIModel
from core.delivery import Delivery
from generation.storage import media_storage

# --- Async tasks -------------------------------------------------------------------------------


def new_task_id() -> str:
    from core.ids import new_public_id

    return new_public_id("task")


class TaskStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class Task(models.Model):
    """An async image or video generation: pending -> running -> completed | failed | cancelled.

    Every transition is a conditional UPDATE on ``status`` (compare-and-set), so a duplicate
    worker, poller or reaper can never settle or refund twice. ``version`` grows with every
    visible change; the SSE stream uses it as the event id.
    """

    public_id = models.CharField(max_length=40, unique=True, default=new_task_id, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="tasks")
    api_key = models.ForeignKey(
        "keys.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    model = models.ForeignKey(AIModel, on_delete=models.PROTECT, related_name="tasks")
    out_task_id = models.CharField(max_length=128, blank=True)
    request_digest = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    # The group multiplier when it was submitted: the final charge is priced the same way.
    rate_multiplier = models.DecimalField(max_digits=6, decimal_places=3, default=1)
    estimated_credits = models.BigIntegerField(default=0)
    estimated_seconds = models.PositiveIntegerField(default=0)
    credits_used = models.BigIntegerField(null=True, blank=True)
    output = models.JSONField(default=list, blank=True)
    error = models.JSONField(null=True, blank=True)
    upstream_id = models.CharField(max_length=500, blank=True)
    # The deployment that accepted the submit: polls, downloads and cancels go to its channel.
    deployment = models.ForeignKey(
        "catalogue.Deployment", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    callback_url = models.URLField(max_length=2000, blank=True)
    # The X-Request-ID of the submit: the worker's log lines and the callback carry it too.
    request_id = models.CharField(max_length=40, blank=True)
    # The submit's tags (billing/tags.py), sorted key=value joined by commas: its usage row's.
    tags = models.CharField(max_length=1400, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # When a worker last looked at it; the reaper revives tasks nobody looks at any more.
    heartbeat_at = models.DateTimeField(default=timezone.now)
    # The current chain of worker messages: a message carrying another lease is stale and
    # stops, so a revived task never ends up with two pollers.
    lease = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="task_account_recent"),
            models.Index(fields=["status", "heartbeat_at"], name="task_status_heartbeat"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "out_task_id"],
                condition=~models.Q(out_task_id=""),
                name="task_unique_out_task_id",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=TaskStatus.values), name="task_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="task_progress_lte_100"
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def new_artifact_key() -> str:
    import secrets

    return secrets.token_urlsafe(18)


class Artifact(models.Model):
    """A generated image or video, copied into our storage and served from signed URLs.

    ``key`` is random and is all a URL carries: nothing about the task or the account."""

    key = models.CharField(max_length=40, unique=True, default=new_artifact_key, editable=False)
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.CASCADE, related_name="artifacts"
    )
    task = models.ForeignKey(
        Task, on_delete=models.CASCADE, null=True, blank=True, related_name="artifacts"
    )
    kind = models.CharField(max_length=8, choices=[("image", "Image"), ("video", "Video")])
    # Emptied when the file is deleted at expiry (the row of a task's output stays).
    file = models.FileField(upload_to="artifacts/%Y/%m/%d/", storage=media_storage, blank=True)
    mime_type = models.CharField(max_length=50)
    size_bytes = models.BigIntegerField(default=0)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    duration_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The file and its links last until then (BYTESPIKE_MEDIA_RETENTION_DAYS after creation).
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # What beat's expiry job looks for: files still kept, oldest first.
            models.Index(fields=["expires_at"], condition=~models.Q(file=""), name="artifact_kept")
        ]

    def __str__(self) -> str:
        return self.key


class CallbackDelivery(Delivery):
    """A task's terminal event for its callback URL. The payload and ``webhook_id`` are fixed
    when it is created, so every attempt (and a manual redelivery) sends the same message."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="deliveries")
    webhook_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=32)
    url = models.URLField(max_length=2000)
    payload = models.JSONField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return self.webhook_id


class CallbackAttempt(models.Model):
    delivery = models.ForeignKey(
        CallbackDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.CharField(max_length=500, blank=True)
    manual = models.BooleanField(default=False)

    class Meta:
        ordering = ["-attempted_at", "-id"]

    def __str__(self) -> str:
        return f"{self.delivery} at {self.attempted_at:%Y-%m-%d %H:%M:%S}"


# --- Upstream health ---------------------------------------------------------------------------

# Upper bounds (ms) of the buckets of the attempt latency histogram, and a last bucket for the
# slower ones. Log-scale: a percentile read from it is a bucket's bound, within a factor of about
# 2.5 of the true value, and a row stays small whatever the traffic.
LATENCY_BOUNDS_MS = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000)
LATENCY_COLUMNS = (
    *(f"latency_le_{bound}ms" for bound in LATENCY_BOUNDS_MS),
    f"latency_over_{LATENCY_BOUNDS_MS[-1]}ms",
)


class DeploymentMinute(models.Model):
    """The upstream attempts of one deployment in one minute: how many, how many failed, and how
    many fell in each latency bucket (``LATENCY_COLUMNS``). Every process adds its counts into the
    same row (generation/health.py), so a row is the whole fleet's minute."""

    deployment = models.ForeignKey(
        "catalogue.Deployment", on_delete=models.CASCADE, related_name="+"
    )
    minute = models.DateTimeField(help_text="The minute's start.")
    calls = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "minute"], name="deployment_minute_unique"
            )
        ]
        indexes = [models.Index(fields=["minute"], name="deployment_minute_age")]

    def __str__(self) -> str:
        return f"deployment {self.deployment_id} at {self.minute:%Y-%m-%d %H:%M}"


# A column per bucket rather than a JSON list, so that processes add into them in plain SQL.
for _column in LATENCY_COLUMNS:
    DeploymentMinute.add_to_class(_column, models.PositiveIntegerField(default=0))
