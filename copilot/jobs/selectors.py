"""Reads: which jobs a request, a page or a command is about."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta

from django.utils import timezone

from copilot.jobs.exceptions import JobNotFound
from copilot.jobs.models import GenerationJob, JobEvent


def job_get(*, job_id: uuid.UUID | str, user=None) -> GenerationJob:
    """One job by id; with ``user``, only if they own it or are staff (else JobNotFound)."""
    jobs = GenerationJob.objects.select_related("owner")
    if user is not None:
        jobs = jobs.owned_by(user)
    try:
        return jobs.get(pk=job_id)
    except (GenerationJob.DoesNotExist, ValueError, TypeError) as exc:
        raise JobNotFound(f"no job {job_id}") from exc


def jobs_get_all(*, job_ids: Sequence[uuid.UUID]) -> list[GenerationJob]:
    """The jobs with these ids, in the order given; JobNotFound names the first unknown id."""
    found = GenerationJob.objects.in_bulk(list(job_ids))
    for job_id in job_ids:
        if job_id not in found:
            raise JobNotFound(f"no job {job_id}")
    return [found[job_id] for job_id in job_ids]


def jobs_matching(
    *,
    statuses: Iterable[str] | None = None,
    kinds: Iterable[str] | None = None,
    created_within: timedelta | None = None,
    finished_before: timedelta | None = None,
) -> list[GenerationJob]:
    """Jobs filtered the way the operators' commands filter them, oldest first."""
    jobs = GenerationJob.objects.order_by("created_at")
    now = timezone.now()
    if statuses is not None:
        jobs = jobs.filter(status__in=list(statuses))
    if kinds is not None:
        jobs = jobs.filter(kind__in=list(kinds))
    if created_within is not None:
        jobs = jobs.filter(created_at__gte=now - created_within)
    if finished_before is not None:
        jobs = jobs.finished().filter(finished_at__lt=now - finished_before)
    return list(jobs)


def events_after(*, job_id: uuid.UUID, seq: int, limit: int | None = None) -> list[JobEvent]:
    """A job's events with ``seq`` above ``seq``, in order."""
    events = JobEvent.objects.filter(job_id=job_id, seq__gt=seq).order_by("seq")
    return list(events[:limit] if limit else events)
