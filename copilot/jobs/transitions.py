"""Status changes: the state machine, and one named function per change it allows.

Each function moves a job to its next status, sets what that change sets, and logs it as one
event, in one transaction; it refuses a change the job's status does not allow
(IllegalTransition). Every change to a terminal status sets ``finished_at`` and clears the
lease. A runner passes its ``lease_owner``: the change is written only while that runner is
still the job's ``lease_owner``, otherwise LeaseLost is raised and nothing changes.

``job`` is the caller's copy of the job: what it believes the row is. On PostgreSQL the change
is one statement guarded by that copy's status and attempt
(:func:`copilot.jobs.fastpath.transition_update`). When that statement writes nothing (the row
moved on, the lease is lost, no such job), or on another database, the row is locked and the
change is checked and written against the row as it really is. So a stale copy is always
right, only slower. Both ways write what :func:`_assignments` and :func:`transition_event_data`
compute, and return the job as now stored. Every end of an attempt, whichever way it was
written, asks :mod:`copilot.jobs.notify` to email the owner once it commits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from copilot.jobs import fastpath
from copilot.jobs.events import event_add, job_locked
from copilot.jobs.exceptions import IllegalTransition
from copilot.jobs.messaging import publish_on_commit
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.notify import notify_on_commit

logger = logging.getLogger(__name__)

Status = GenerationJob.Status
EventType = JobEvent.Type

#: The state machine: which status may follow which. Terminal states lead nowhere, except
#: that a failed, cancelled or timed-out job may be queued again as a new attempt (job_requeue).
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

#: Job fields a change sets that a reader needs to render it: their new value, when it is
#: not empty, travels in the change's event.
EVENT_FIELDS = ("upstream_job_id", "result", "error_type", "error_message")


@dataclass(frozen=True)
class Transition:
    """A change written: the job as now stored, the event that logs it, the status it left."""

    job: GenerationJob
    event: JobEvent
    previous: str


def transition_event_data(
    *, to: str, previous: str | None, attempt: int, extras: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The data of the event that logs a job's move to ``to``: ``{status, previous, attempt,
    terminal}`` and each of ``extras`` that has a value (None and "" are left out)."""
    data: dict[str, Any] = {
        "status": to,
        "previous": previous,
        "attempt": attempt,
        "terminal": to in GenerationJob.TERMINAL_STATUSES,
    }
    data.update({k: v for k, v in (extras or {}).items() if v not in (None, "")})
    return data


def _assignments(
    *, to: str, attempt: int, fields: Mapping[str, Any], now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a move to ``to`` of a job in ``attempt`` writes: the new field values (``fields``
    among them), and the fields it sets only where the row has none."""
    assignments: dict[str, Any] = {"status": to, **fields}
    if_unset: dict[str, Any] = {}
    if to == Status.SUBMITTING:
        assignments["started_at"] = now
    elif to == Status.QUEUED:
        # A new attempt starts from nothing; the earlier ones stay in the event log.
        assignments.update(
            attempt=attempt + 1,
            upstream_job_id="",
            progress={},
            result=None,
            error_type="",
            error_message="",
            cancel_requested_at=None,
            started_at=None,
            finished_at=None,
        )
    elif to == Status.CANCELLED:
        if_unset["cancel_requested_at"] = now
    if to in GenerationJob.TERMINAL_STATUSES:
        assignments.update(finished_at=now, lease_owner="", lease_expires_at=None)
    return assignments, if_unset


def _write(
    *,
    job: GenerationJob,
    to: str,
    event_type: str,
    fields: Mapping[str, Any],
    extras: Mapping[str, Any],
    lease_owner: str | None,
    publish: bool,
) -> Transition:
    """Move ``job`` to ``to``: one statement where the copy is right, else the locked row."""
    extras = {**{k: fields[k] for k in EVENT_FIELDS if k in fields}, **extras}
    done = None
    if to in ALLOWED_TRANSITIONS.get(job.status, ()):
        now = timezone.now()
        assignments, if_unset = _assignments(to=to, attempt=job.attempt, fields=fields, now=now)
        attempt = assignments.get("attempt", job.attempt)
        done = fastpath.transition_update(
            job=job,
            lease_owner=lease_owner,
            assignments=assignments,
            if_unset=if_unset,
            event_type=event_type,
            event_data=transition_event_data(
                to=to, previous=job.status, attempt=attempt, extras=extras
            ),
            now=now,
        )
    if done is not None:
        change = Transition(job=done[0], event=done[1], previous=job.status)
    else:
        change = _write_locked(
            job=job,
            to=to,
            event_type=event_type,
            fields=fields,
            extras=extras,
            lease_owner=lease_owner,
        )
    if publish:
        publish_on_commit(job_id=change.job.id, events=[change.event.as_message()])
    if to in GenerationJob.TERMINAL_STATUSES:
        notify_on_commit(job=change.job, event_seq=change.event.seq)  # its owner's email
    logger.info(
        "job transition id=%s from=%s to=%s seq=%s",
        change.job.id,
        change.previous,
        to,
        change.event.seq,
    )
    return change


def _write_locked(
    *,
    job: GenerationJob,
    to: str,
    event_type: str,
    fields: Mapping[str, Any],
    extras: Mapping[str, Any],
    lease_owner: str | None,
) -> Transition:
    """:func:`_write` against the locked row: its real status and attempt decide."""
    with transaction.atomic():
        row = job_locked(job_id=job.pk, lease_owner=lease_owner)
        previous = row.status
        if to not in ALLOWED_TRANSITIONS[previous]:
            raise IllegalTransition(job_id=row.id, current=previous, requested=to)
        assignments, if_unset = _assignments(
            to=to, attempt=row.attempt, fields=fields, now=timezone.now()
        )
        for name, value in assignments.items():
            setattr(row, name, value)
        for name, value in if_unset.items():
            if getattr(row, name) is None:
                setattr(row, name, value)
        data = transition_event_data(to=to, previous=previous, attempt=row.attempt, extras=extras)
        event = event_add(job=row, type=event_type, data=data)
        row.save(update_fields=[*assignments, *if_unset, "last_event_seq", "updated_at"])
    return Transition(job=row, event=event, previous=previous)


def job_mark_submitting(
    *, job: GenerationJob, lease_owner: str | None = None, publish: bool = True
) -> Transition:
    """queued -> submitting: a runner starts this attempt (``started_at`` = now)."""
    return _write(
        job=job,
        to=Status.SUBMITTING,
        event_type=EventType.STATUS,
        fields={},
        extras={},
        lease_owner=lease_owner,
        publish=publish,
    )


def job_mark_running(
    *,
    job: GenerationJob,
    upstream_job_id: str,
    lease_owner: str | None = None,
    publish: bool = True,
) -> Transition:
    """submitting -> running: the Agent Generator accepted the job as ``upstream_job_id``."""
    return _write(
        job=job,
        to=Status.RUNNING,
        event_type=EventType.STATUS,
        fields={"upstream_job_id": upstream_job_id},
        extras={},
        lease_owner=lease_owner,
        publish=publish,
    )


def job_complete(
    *,
    job: GenerationJob,
    result: dict[str, Any],
    lease_owner: str | None = None,
    publish: bool = True,
) -> Transition:
    """running -> completed with ``result``, logged as a ``result`` event."""
    return _write(
        job=job,
        to=Status.COMPLETED,
        event_type=EventType.RESULT,
        fields={"result": result},
        extras={},
        lease_owner=lease_owner,
        publish=publish,
    )


def job_fail(
    *,
    job: GenerationJob,
    error_type: str,
    error_message: str,
    upstream_error_type: str | None = None,
    lease_owner: str | None = None,
    publish: bool = True,
) -> Transition:
    """queued, submitting or running -> failed, logged as an ``error`` event (which names the
    Agent Generator's own ``upstream_error_type``, when given)."""
    return _write(
        job=job,
        to=Status.FAILED,
        event_type=EventType.ERROR,
        fields={"error_type": error_type, "error_message": error_message},
        extras={"upstream_error_type": upstream_error_type},
        lease_owner=lease_owner,
        publish=publish,
    )


def job_time_out(
    *,
    job: GenerationJob,
    error_message: str,
    lease_owner: str | None = None,
    publish: bool = True,
) -> Transition:
    """submitting or running -> timed_out (``poll_timeout``), logged as an ``error`` event."""
    return _write(
        job=job,
        to=Status.TIMED_OUT,
        event_type=EventType.ERROR,
        fields={"error_type": "poll_timeout", "error_message": error_message},
        extras={},
        lease_owner=lease_owner,
        publish=publish,
    )


def job_cancel_confirmed(
    *,
    job: GenerationJob,
    error_message: str,
    error_type: str = "cancelled",
    by: str | None = None,
    lease_owner: str | None = None,
    publish: bool = True,
) -> Transition:
    """queued, submitting or running -> cancelled: the job stopped (``cancel_requested_at``
    = now if nobody asked before; the event names who cancelled it ``by``, when given)."""
    return _write(
        job=job,
        to=Status.CANCELLED,
        event_type=EventType.STATUS,
        fields={"error_type": error_type, "error_message": error_message},
        extras={"by": by},
        lease_owner=lease_owner,
        publish=publish,
    )


def job_requeue(*, job: GenerationJob, by: str, publish: bool = True) -> Transition:
    """failed, cancelled or timed_out -> queued as the next attempt, cleared of the last one's
    upstream job, progress, result, error and times; logged as a ``retry`` event."""
    return _write(
        job=job,
        to=Status.QUEUED,
        event_type=EventType.RETRY,
        fields={},
        extras={"by": by},
        lease_owner=None,
        publish=publish,
    )


def transition_written(*, job: GenerationJob, to: str, after_seq: int) -> Transition | None:
    """The move of ``job`` (the caller's copy) to ``to``, if it is stored after event
    ``after_seq``; None when it is not.

    For a writer whose connection broke during the change (a database restart): the server
    may have committed it before the answer was lost. The writer looks here before writing
    again, so the change and its event are stored once (:mod:`copilot.runner.outage`).
    """
    row = GenerationJob.objects.filter(pk=job.pk).first()
    if row is None or row.status != to or row.attempt != job.attempt:
        return None
    event = (
        JobEvent.objects.filter(
            job_id=job.pk, seq__gt=after_seq, data__status=to, data__previous=job.status
        )
        .order_by("seq")
        .first()
    )
    if event is None:
        return None
    if to in GenerationJob.TERMINAL_STATUSES:
        notify_on_commit(job=row, event_seq=event.seq)  # once per attempt, whoever asks
    return Transition(job=row, event=event, previous=job.status)


#: The status each runner-side change leads to (for :func:`transition_written`).
TARGET_STATUS: dict[Any, str] = {
    job_mark_submitting: Status.SUBMITTING,
    job_mark_running: Status.RUNNING,
    job_complete: Status.COMPLETED,
    job_fail: Status.FAILED,
    job_time_out: Status.TIMED_OUT,
    job_cancel_confirmed: Status.CANCELLED,
}
