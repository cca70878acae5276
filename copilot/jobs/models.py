"""The portal's records: generation jobs and their append-only event logs.

The database row is the truth about a job. The channel layer only wakes things up (a runner
to drive the job, a stream to read new events); anything it drops is found again here.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class JobQuerySet(models.QuerySet["GenerationJob"]):
    """Named states of jobs, so callers never spell status lists out themselves."""

    def active(self) -> JobQuerySet:
        """Jobs that have not ended yet: queued, submitting or running."""
        return self.filter(status__in=GenerationJob.ACTIVE_STATUSES)

    def finished(self) -> JobQuerySet:
        """Jobs in a terminal state."""
        return self.filter(status__in=GenerationJob.TERMINAL_STATUSES)

    def claimable(self, *, now: datetime | None = None) -> JobQuerySet:
        """Jobs free to take at ``now``: never claimed, released, or held by a runner without
        a fresh heartbeat (:class:`RunnerHeartbeat`)."""
        alive = RunnerHeartbeat.objects.alive(now=now).values("owner")
        return self.filter(Q(lease_owner="") | ~Q(lease_owner__in=alive))

    def stale(self, *, now: datetime | None = None) -> JobQuerySet:
        """Active jobs no live runner holds: never claimed, released, or whose runner died."""
        return self.active().claimable(now=now)

    def owned_by(self, user) -> JobQuerySet:
        """The jobs a user may see: their own, or every job for staff."""
        if user.is_staff:
            return self
        return self.filter(owner=user)


class HeartbeatQuerySet(models.QuerySet["RunnerHeartbeat"]):
    def alive(self, *, now: datetime | None = None) -> HeartbeatQuerySet:
        """Runners seen within ``COPILOT_RUNNER_DEAD_SECONDS`` of ``now``."""
        return self.filter(seen_at__gte=dead_before(now=now))


def dead_before(*, now: datetime | None = None) -> datetime:
    """A runner whose heartbeat is older than this is dead."""
    return (now or timezone.now()) - timedelta(seconds=settings.COPILOT_RUNNER_DEAD_SECONDS)


class RunnerHeartbeat(models.Model):
    """One running runner, renewed once a second: its jobs are its own while this is fresh.

    A runner is dead when ``seen_at`` is older than ``COPILOT_RUNNER_DEAD_SECONDS``; its jobs
    are then claimable (see :mod:`copilot.jobs.leases`).
    """

    owner = models.CharField(max_length=128, primary_key=True)
    host = models.CharField(max_length=255, blank=True, default="")
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(default=timezone.now)

    objects = HeartbeatQuerySet.as_manager()

    def __str__(self) -> str:
        return f"runner {self.owner} (seen {self.seen_at:%H:%M:%S})"


class GenerationJob(models.Model):
    """One request to the Agent Generator, followed from submission to its end."""

    class Kind(models.TextChoices):
        DECOMPOSE = "decompose", "Decompose a goal"
        GENERATE = "generate", "Generate an agent"
        UPDATE = "update", "Update an agent"
        CUSTOMIZE = "customize", "Customize a template"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        """Stored; waiting for a runner to claim it."""
        SUBMITTING = "submitting", "Submitting"
        """A runner holds it and is submitting it to the Agent Generator."""
        RUNNING = "running", "Running"
        """The Agent Generator accepted it (upstream_job_id is set); the runner polls it."""
        COMPLETED = "completed", "Completed"
        """Ended with a result."""
        FAILED = "failed", "Failed"
        """Ended with an error (error_type and error_message say which)."""
        CANCELLED = "cancelled", "Cancelled"
        """Ended because a user or an admin stopped it."""
        TIMED_OUT = "timed_out", "Timed out"
        """Ended because the polling budget ran out."""

    ACTIVE_STATUSES = (Status.QUEUED, Status.SUBMITTING, Status.RUNNING)
    TERMINAL_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT)
    RETRYABLE_STATUSES = (Status.FAILED, Status.CANCELLED, Status.TIMED_OUT)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generation_jobs"
    )
    kind = models.CharField(max_length=max(len(v) for v in Kind.values), choices=Kind.choices)
    request = models.JSONField(default=dict, help_text="The payload as submitted.")
    status = models.CharField(
        max_length=max(len(v) for v in Status.values),
        choices=Status.choices,
        default=Status.QUEUED,
        db_index=True,
    )
    upstream_job_id = models.CharField(max_length=128, blank=True, default="", db_index=True)
    progress = models.JSONField(default=dict, blank=True, help_text="{percent, phase}")
    result = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    attempt = models.PositiveIntegerField(default=1)
    notify_email = models.BooleanField(
        default=False, help_text="Email the owner when an attempt ends (copilot.jobs.notify)."
    )
    notified_attempt = models.PositiveIntegerField(
        default=0, help_text="The last attempt whose end email was claimed (0: none)."
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=128, blank=True, default="")
    #: Unused since runner heartbeats replaced per-job expiry (kept for old rows and tools).
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_event_seq = models.PositiveIntegerField(
        default=0, help_text="seq of the newest JobEvent; the next one gets this + 1."
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text="This attempt's start.")
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            models.Index(fields=["status", "lease_expires_at"], name="job_status_lease"),
            # Keyset pages and admin pages on (created_at DESC, id DESC), unfiltered and
            # filtered (migration 0006; on PostgreSQL also a full-text index of the request).
            models.Index(fields=["-created_at", "-id"], name="job_created_id"),
            models.Index(fields=["status", "-created_at", "-id"], name="job_status_created"),
            models.Index(fields=["kind", "-created_at", "-id"], name="job_kind_created"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL_STATUSES

    @property
    def is_retryable(self) -> bool:
        return self.status in self.RETRYABLE_STATUSES

    @property
    def elapsed(self) -> timedelta | None:
        """Time since this attempt started, up to its end (None before it starts)."""
        start = self.started_at
        if start is None:
            return None
        return (self.finished_at or timezone.now()) - start


class JobEvent(models.Model):
    """One entry of a job's append-only event log; ``seq`` runs 1, 2, 3… per job, no gaps.

    This log is what a reconnecting browser replays, so events are only ever appended through
    :mod:`copilot.jobs.events` and :mod:`copilot.jobs.transitions`, which number them under a
    row lock of the job.
    """

    class Type(models.TextChoices):
        STATUS = "status", "Status"
        PROGRESS = "progress", "Progress"
        RESULT = "result", "Result"
        ERROR = "error", "Error"
        CANCEL_REQUESTED = "cancel_requested", "Cancel requested"
        RETRY = "retry", "Retry"

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=max(len(v) for v in Type.values), choices=Type.choices)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["job", "seq"], name="job_event_seq_unique"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.type}"

    def as_message(self) -> dict:
        """The event as it travels through the channel layer and the stream."""
        return {"seq": self.seq, "type": self.type, "data": self.data}


class ApiToken(models.Model):
    """A key a script sends as ``Authorization: Bearer <key>`` to use the JSON API as ``user``.

    Only the key's SHA-256 is stored (``key_hash``): the plain key is shown once, by
    ``manage.py create_api_token``, and cannot be read back. Delete the row to revoke it. A
    token with ``expires_at`` stops working then; one without lasts until it is revoked.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    name = models.CharField(max_length=100, blank=True, default="", help_text="A label.")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="When the token stops working; empty: never."
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"API token {self.name or self.pk} of {self.user}"

    def is_expired(self, *, now: datetime | None = None) -> bool:
        """Whether ``expires_at`` has passed (never, without one)."""
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())
