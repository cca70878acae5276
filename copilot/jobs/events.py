"""Appending to a job's event log without changing its status: progress steps and notes.

Each write runs in one transaction with the job's row locked (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's IMMEDIATE transactions serialize writers). That lock is what keeps an
event log's ``seq`` gap-free with any number of writers: the next seq is the row's
``last_event_seq`` + 1, written in the same transaction as the event. On PostgreSQL the same
write is one statement (:mod:`copilot.jobs.fastpath`); when that statement writes nothing, the
locked path below raises the precise error.

A runner passes its ``lease_owner``: the write happens only while the job's ``lease_owner``
is still that runner (a takeover changes it, :mod:`copilot.jobs.leases`), otherwise
:class:`~copilot.jobs.exceptions.LeaseLost` is raised and nothing changes. Status changes are
in :mod:`copilot.jobs.transitions`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from copilot.jobs import fastpath
from copilot.jobs.exceptions import IllegalTransition, JobNotFound, LeaseLost
from copilot.jobs.messaging import publish_on_commit
from copilot.jobs.models import GenerationJob, JobEvent


def job_locked(*, job_id: uuid.UUID | str, lease_owner: str | None = None) -> GenerationJob:
    """The job's row, locked until the current transaction ends.

    Raises JobNotFound for an unknown id; LeaseLost when ``lease_owner`` is given and is no
    longer the job's ``lease_owner`` (another runner took it over, or it was released).
    """
    try:
        job = GenerationJob.objects.select_for_update().get(pk=job_id)
    except (GenerationJob.DoesNotExist, ValueError, ValidationError) as exc:
        raise JobNotFound(f"no job {job_id}") from exc
    if lease_owner is not None and job.lease_owner != lease_owner:
        raise LeaseLost(f"job {job.id} is no longer leased by {lease_owner}")
    return job


def event_add(*, job: GenerationJob, type: str, data: Mapping[str, Any]) -> JobEvent:
    """Append the next event to a job :func:`job_locked` returned, in its transaction.

    The caller saves the job's ``last_event_seq`` (with its own changes).
    """
    job.last_event_seq += 1
    return JobEvent.objects.create(job=job, seq=job.last_event_seq, type=type, data=dict(data))


def event_append(
    *,
    job_id: uuid.UUID | str,
    type: str,
    data: Mapping[str, Any],
    lease_owner: str | None = None,
    publish: bool = True,
) -> JobEvent:
    """Append one event to a job's log, numbered right after the last one."""
    # One statement on PostgreSQL; None there means nothing was written, and the locked path
    # below raises the precise error (or writes, if the row changed in between).
    event = fastpath.event_insert(
        job_id=job_id,
        type=type,
        data=data,
        lease_owner=lease_owner,
        statuses=GenerationJob.Status.values,
    )
    if event is None:
        with transaction.atomic():
            job = job_locked(job_id=job_id, lease_owner=lease_owner)
            event = event_add(job=job, type=type, data=data)
            job.save(update_fields=["last_event_seq", "updated_at"])
    if publish:
        publish_on_commit(job_id=event.job_id, events=[event.as_message()])
    return event


def job_progress(
    *,
    job_id: uuid.UUID | str,
    percent: int | None,
    phase: str | None,
    lease_owner: str | None = None,
    publish: bool = True,
) -> JobEvent:
    """Record a progress step of an active job (``{percent, phase}``) and log it.

    Raises IllegalTransition when the job has ended.
    """
    progress = {"percent": percent, "phase": phase}
    event = fastpath.event_insert(
        job_id=job_id,
        type=JobEvent.Type.PROGRESS,
        data=progress,
        lease_owner=lease_owner,
        statuses=GenerationJob.ACTIVE_STATUSES,
        progress=progress,
    )
    if event is None:
        with transaction.atomic():
            job = job_locked(job_id=job_id, lease_owner=lease_owner)
            if job.is_terminal:
                raise IllegalTransition(job_id=job.id, current=job.status, requested="progress")
            job.progress = progress
            event = event_add(job=job, type=JobEvent.Type.PROGRESS, data=progress)
            job.save(update_fields=["progress", "last_event_seq", "updated_at"])
    if publish:
        publish_on_commit(job_id=event.job_id, events=[event.as_message()])
    return event


def event_written(
    *, job_id: uuid.UUID, after_seq: int, type: str, data: Mapping[str, Any]
) -> JobEvent | None:
    """The event ``type`` with ``data`` logged after ``after_seq``, if there is one.

    For a writer whose connection broke while it appended (a database restart): the server
    may have committed the write before the answer was lost. The writer looks here before
    writing again, so the event is stored once (:mod:`copilot.runner.outage`).
    """
    expected = dict(data)
    for event in JobEvent.objects.filter(job_id=job_id, seq__gt=after_seq, type=type).order_by(
        "seq"
    ):
        if event.data == expected:
            return event
    return None
