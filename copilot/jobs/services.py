"""Every write to jobs and their events goes through these functions.

Each one runs in one transaction with the job's row locked (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's IMMEDIATE transactions serialize writers), checks the job's current state
first and refuses a change it does not allow. That lock is also what keeps an event log's
``seq`` gap-free with any number of writers: the next seq is the row's ``last_event_seq`` + 1,
written in the same transaction as the event.

A runner passes its ``lease_owner``: the write happens only while that runner still holds an
unexpired lease on the job, otherwise :class:`~copilot.jobs.exceptions.LeaseLost` is raised and
nothing changes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from copilot.jobs import fastpath as event_sql
from copilot.jobs.exceptions import (
    IllegalTransition,
    JobLimitReached,
    JobNotFound,
    LeaseLost,
)
from copilot.jobs.job_requests import job_request_clean
from copilot.jobs.messaging import publish_on_commit, wake_on_commit
from copilot.jobs.models import GenerationJob, JobEvent

logger = logging.getLogger(__name__)

Status = GenerationJob.Status
EventType = JobEvent.Type

#: The state machine: which status may follow which. Terminal states lead nowhere, except
#: that a failed, cancelled or timed-out job may be queued again as a new attempt (job_retry).
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    Status.QUEUED: frozenset({Status.SUBMITTING, Status.FAILED, Status.CANCELLED}),
    Status.SUBMITTING: frozenset(
        {Status.RUNNING, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT}
    ),
    Status.RUNNING: frozenset(
        {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT}
    ),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset({Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.QUEUED}),
    Status.TIMED_OUT: frozenset({Status.QUEUED}),
}

#: Statuses in which a job still takes progress steps.
ACTIVE_STATUSES = [s for s in Status.values if s not in GenerationJob.TERMINAL_STATUSES]

#: Job fields a transition may set beside the status.
TRANSITION_FIELDS = frozenset(
    {
        "upstream_job_id",
        "progress",
        "result",
        "error_type",
        "error_message",
        "attempt",
        "cancel_requested_at",
        "started_at",
        "finished_at",
        "lease_owner",
        "lease_expires_at",
    }
)

#: Fields whose new value is copied into the transition's event.
EVENT_FIELDS = ("upstream_job_id", "result", "error_type", "error_message")


def _job_locked(*, job_id: uuid.UUID | str, lease_owner: str | None) -> GenerationJob:
    try:
        job = GenerationJob.objects.select_for_update().get(pk=job_id)
    except (GenerationJob.DoesNotExist, ValueError, ValidationError) as exc:
        raise JobNotFound(f"no job {job_id}") from exc
    if lease_owner is not None and (
        job.lease_owner != lease_owner
        or job.lease_expires_at is None
        or job.lease_expires_at <= timezone.now()
    ):
        raise LeaseLost(f"job {job.id} is no longer leased by {lease_owner}")
    return job


def _event_add(job: GenerationJob, *, type: str, data: Mapping[str, Any]) -> JobEvent:
    """Append the next event to a locked job; the caller saves ``last_event_seq``."""
    job.last_event_seq += 1
    return JobEvent.objects.create(job=job, seq=job.last_event_seq, type=type, data=dict(data))


def _transition_fast(
    *,
    job_id: uuid.UUID | str,
    to: str,
    lease_owner: str | None,
    event_type: str | None,
    event_data: Mapping[str, Any] | None,
    changes: Mapping[str, Any],
) -> tuple[GenerationJob, JobEvent, str] | None:
    """:func:`job_transition` in one statement where the database has it (see event_sql).

    Builds exactly what the ORM path below writes; None means "take the ORM path".
    """
    now = timezone.now()
    terminal = to in GenerationJob.TERMINAL_STATUSES
    assignments = dict(changes)
    if terminal:
        assignments.update(finished_at=now, lease_owner="", lease_expires_at=None)
    data = {"terminal": terminal}
    data.update({k: changes[k] for k in EVENT_FIELDS if changes.get(k) not in (None, "")})
    data.update(event_data or {})
    return event_sql.transition_update(
        job_id=job_id,
        to=to,
        sources=[s for s, targets in ALLOWED_TRANSITIONS.items() if to in targets],
        lease_owner=lease_owner,
        assignments=assignments,
        started_at_default=now if to == Status.SUBMITTING else None,
        event_type=event_type or _event_type_for(to),
        event_data=data,
        now=now,
    )


def _event_type_for(status: str) -> str:
    if status == Status.COMPLETED:
        return EventType.RESULT
    if status in (Status.FAILED, Status.TIMED_OUT):
        return EventType.ERROR
    return EventType.STATUS


def event_append(
    *,
    job_id: uuid.UUID | str,
    type: str,
    data: Mapping[str, Any],
    lease_owner: str | None = None,
    publish: bool = True,
) -> JobEvent:
    """Append one event to a job's log, numbered right after the last one."""
    # One statement on PostgreSQL; None there means nothing was written, and the ORM path
    # below raises the precise error (or writes, if the row changed in between).
    event = event_sql.event_insert(
        job_id=job_id, type=type, data=data, lease_owner=lease_owner, statuses=Status.values
    )
    if event is None:
        with transaction.atomic():
            job = _job_locked(job_id=job_id, lease_owner=lease_owner)
            event = _event_add(job, type=type, data=data)
            job.save(update_fields=["last_event_seq", "updated_at"])
    if publish:
        publish_on_commit(job_id=event.job_id, events=[event.as_message()])
    return event


def job_transition(
    *,
    job_id: uuid.UUID | str,
    to: str,
    lease_owner: str | None = None,
    event_type: str | None = None,
    event_data: Mapping[str, Any] | None = None,
    publish: bool = True,
    **changes: Any,
) -> tuple[GenerationJob, JobEvent]:
    """Move a job to status ``to``, set ``changes`` on it and log the change as one event.

    Raises IllegalTransition when the job's current status does not allow ``to``; LeaseLost
    when ``lease_owner`` no longer holds the job; JobNotFound for an unknown id.
    """
    unknown = set(changes) - TRANSITION_FIELDS
    if unknown:
        raise TypeError(f"job_transition() cannot set {', '.join(sorted(unknown))}")
    done = _transition_fast(
        job_id=job_id,
        to=to,
        lease_owner=lease_owner,
        event_type=event_type,
        event_data=event_data,
        changes=changes,
    )
    if done is not None:
        job, event, previous = done
        if publish:
            publish_on_commit(job_id=job.id, events=[event.as_message()])
        logger.info("job transition id=%s from=%s to=%s seq=%s", job.id, previous, to, event.seq)
        return job, event
    with transaction.atomic():
        job = _job_locked(job_id=job_id, lease_owner=lease_owner)
        previous = job.status
        if to not in ALLOWED_TRANSITIONS[previous]:
            raise IllegalTransition(job_id=job.id, current=previous, requested=to)
        now = timezone.now()
        job.status = to
        for field, value in changes.items():
            setattr(job, field, value)
        terminal = to in GenerationJob.TERMINAL_STATUSES
        if terminal:
            job.finished_at = now
            job.lease_owner = ""
            job.lease_expires_at = None
        if to == Status.SUBMITTING and job.started_at is None:
            job.started_at = now
        data = {"status": to, "previous": previous, "attempt": job.attempt, "terminal": terminal}
        # What a reader needs to render the change travels in the event itself.
        data.update({k: changes[k] for k in EVENT_FIELDS if changes.get(k) not in (None, "")})
        data.update(event_data or {})
        event = _event_add(job, type=event_type or _event_type_for(to), data=data)
        job.save(
            update_fields=[
                "status",
                "last_event_seq",
                "finished_at",
                "started_at",
                "lease_owner",
                "lease_expires_at",
                "updated_at",
                *changes,
            ]
        )
        if publish:
            publish_on_commit(job_id=job.id, events=[event.as_message()])
    logger.info("job transition id=%s from=%s to=%s seq=%s", job.id, previous, to, event.seq)
    return job, event


def job_progress(
    *,
    job_id: uuid.UUID | str,
    percent: int | None,
    phase: str | None,
    lease_owner: str | None = None,
    publish: bool = True,
) -> JobEvent:
    """Record a progress step of an active job (``{percent, phase}``) and log it."""
    progress = {"percent": percent, "phase": phase}
    event = event_sql.event_insert(
        job_id=job_id,
        type=EventType.PROGRESS,
        data=progress,
        lease_owner=lease_owner,
        statuses=ACTIVE_STATUSES,
        progress=progress,
    )
    if event is None:
        with transaction.atomic():
            job = _job_locked(job_id=job_id, lease_owner=lease_owner)
            if job.is_terminal:
                raise IllegalTransition(job_id=job.id, current=job.status, requested="progress")
            job.progress = progress
            event = _event_add(job, type=EventType.PROGRESS, data=progress)
            job.save(update_fields=["progress", "last_event_seq", "updated_at"])
    if publish:
        publish_on_commit(job_id=event.job_id, events=[event.as_message()])
    return event


def job_submit(*, user, kind: str, payload: Mapping[str, Any]) -> GenerationJob:
    """Validate and store a new job for ``user``, then ask a runner to run it.

    Raises InvalidJobRequest (field errors) or JobLimitReached; stores nothing then.
    """
    from django.conf import settings

    request = job_request_clean(kind=kind, payload=payload)
    limit = settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER
    with transaction.atomic():
        # Lock the user's row so two submits at once cannot both pass the limit.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        active = GenerationJob.objects.active().filter(owner=user).count()
        if active >= limit:
            raise JobLimitReached(
                f"{user} already has {active} active job(s); the limit is {limit}. "
                "Wait for one to finish or cancel one."
            )
        job = GenerationJob.objects.create(owner=user, kind=kind, request=request)
        event = _event_add(
            job,
            type=EventType.STATUS,
            data={"status": Status.QUEUED, "previous": None, "attempt": 1, "terminal": False},
        )
        job.save(update_fields=["last_event_seq"])
        publish_on_commit(job_id=job.id, events=[event.as_message()])
        wake_on_commit(job_id=job.id)
    logger.info("job submitted id=%s kind=%s owner=%s", job.id, kind, user.pk)
    return job


def job_cancel(*, job_id: uuid.UUID | str, by) -> GenerationJob:
    """Stop a job: a queued one ends at once; a running one is marked, and its runner sends
    the upstream ``DELETE`` and ends it ``cancelled``. Raises IllegalTransition when ended."""
    with transaction.atomic():
        job = _job_locked(job_id=job_id, lease_owner=None)
        if job.is_terminal:
            raise IllegalTransition(job_id=job.id, current=job.status, requested=Status.CANCELLED)
        if job.status == Status.QUEUED and not job.upstream_job_id:
            return job_transition(
                job_id=job.id,
                to=Status.CANCELLED,
                error_type="cancelled",
                error_message=f"Cancelled by {by} before it started.",
                cancel_requested_at=timezone.now(),
                event_data={"by": str(by)},
            )[0]
        if job.cancel_requested_at is None:
            job.cancel_requested_at = timezone.now()
            event = _event_add(job, type=EventType.CANCEL_REQUESTED, data={"by": str(by)})
            job.save(update_fields=["cancel_requested_at", "last_event_seq", "updated_at"])
            publish_on_commit(job_id=job.id, events=[event.as_message()])
            # The holder hears the event in the job's group; if nobody holds the job, the
            # next runner to claim it sees cancel_requested_at and cancels it.
            wake_on_commit(job_id=job.id)
    logger.info("job cancel requested id=%s by=%s", job.id, by)
    return job


def job_retry(*, job_id: uuid.UUID | str, by) -> GenerationJob:
    """Start a new attempt of a failed, timed-out or cancelled job (a new upstream job).

    The earlier attempts' events stay in the log. Raises IllegalTransition otherwise.
    """
    with transaction.atomic():
        job = _job_locked(job_id=job_id, lease_owner=None)
        if not job.is_retryable:
            raise IllegalTransition(job_id=job.id, current=job.status, requested="retried")
        job, _ = job_transition(
            job_id=job.id,
            to=Status.QUEUED,
            event_type=EventType.RETRY,
            event_data={"by": str(by), "attempt": job.attempt + 1},
            attempt=job.attempt + 1,
            upstream_job_id="",
            progress={},
            result=None,
            error_type="",
            error_message="",
            cancel_requested_at=None,
            started_at=None,
            finished_at=None,
        )
        wake_on_commit(job_id=job.id)
    logger.info("job retried id=%s attempt=%s by=%s", job.id, job.attempt, by)
    return job
