"""What users and operators do to jobs: submit one, cancel one, retry one.

Each runs in one transaction with the job's row locked and refuses a change the job's state
does not allow. The writes they share with the runner live beside them: status changes in
:mod:`copilot.jobs.transitions`, event appends and progress steps in :mod:`copilot.jobs.events`.
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

from copilot.jobs.events import event_add, job_locked
from copilot.jobs.exceptions import IllegalTransition, JobLimitReached
from copilot.jobs.job_requests import job_request_clean
from copilot.jobs.messaging import publish_on_commit, wake_on_commit
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.transitions import job_cancel_confirmed, job_requeue, transition_event_data

logger = logging.getLogger(__name__)

Status = GenerationJob.Status
EventType = JobEvent.Type


def _owner_locked(*, owner_id: int | None):
    """The owner's row, locked until the transaction ends, so that two submits or retries at
    once cannot both pass the active-jobs limit. Taken before any job's row (see job_retry)."""
    if owner_id is None:
        return None
    return get_user_model().objects.select_for_update().filter(pk=owner_id).first()


def _active_limit_check(*, owner) -> None:
    """Raise JobLimitReached when ``owner`` has COPILOT_MAX_ACTIVE_JOBS_PER_USER active jobs."""
    from django.conf import settings

    limit = settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER
    active = GenerationJob.objects.active().filter(owner=owner).count()
    if active >= limit:
        raise JobLimitReached(
            f"{owner} already has {active} active job(s); the limit is {limit}. "
            "Wait for one to finish or cancel one."
        )


def _job_owner_id(job_id: uuid.UUID | str) -> int | None:
    try:
        return GenerationJob.objects.filter(pk=job_id).values_list("owner_id", flat=True).first()
    except (ValueError, ValidationError):
        return None  # not a job id: job_locked says so


def job_submit(
    *, user, kind: str, payload: Mapping[str, Any], notify_email: bool = False
) -> GenerationJob:
    """Validate and store a new job for ``user``, then ask a runner to run it; with
    ``notify_email`` the owner gets an email when each of its attempts ends.

    Raises InvalidJobRequest (field errors) or JobLimitReached; stores nothing then.
    """
    request = job_request_clean(kind=kind, payload=payload)
    with transaction.atomic():
        _owner_locked(owner_id=user.pk)
        _active_limit_check(owner=user)
        job = GenerationJob.objects.create(
            owner=user, kind=kind, request=request, notify_email=notify_email
        )
        event = event_add(
            job=job,
            type=EventType.STATUS,
            data=transition_event_data(to=Status.QUEUED, previous=None, attempt=job.attempt),
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
        job = job_locked(job_id=job_id)
        if job.is_terminal:
            raise IllegalTransition(job_id=job.id, current=job.status, requested=Status.CANCELLED)
        if job.status == Status.QUEUED and not job.upstream_job_id:
            return job_cancel_confirmed(
                job=job, by=str(by), error_message=f"Cancelled by {by} before it started."
            ).job
        if job.cancel_requested_at is None:
            job.cancel_requested_at = timezone.now()
            event = event_add(job=job, type=EventType.CANCEL_REQUESTED, data={"by": str(by)})
            job.save(update_fields=["cancel_requested_at", "last_event_seq", "updated_at"])
            publish_on_commit(job_id=job.id, events=[event.as_message()])
            # The holder hears the event in the job's group; if nobody holds the job, the
            # next runner to claim it sees cancel_requested_at and cancels it.
            wake_on_commit(job_id=job.id)
    logger.info("job cancel requested id=%s by=%s", job.id, by)
    return job


def job_retry(*, job_id: uuid.UUID | str, by) -> GenerationJob:
    """Start a new attempt of a failed, timed-out or cancelled job (a new upstream job).

    The earlier attempts' events stay in the log. Raises IllegalTransition otherwise, and
    JobLimitReached when its owner is at the active-jobs limit (a retry counts as a submit).
    """
    with transaction.atomic():
        # The owner's row before the job's, as job_submit and a batch of retries (retry_jobs,
        # in one transaction) take them: the other order could deadlock with such a batch.
        owner = _owner_locked(owner_id=_job_owner_id(job_id))
        job = job_locked(job_id=job_id)
        if not job.is_retryable:
            raise IllegalTransition(job_id=job.id, current=job.status, requested="retried")
        _active_limit_check(owner=owner)
        job = job_requeue(job=job, by=str(by)).job
        wake_on_commit(job_id=job.id)
    logger.info("job retried id=%s attempt=%s by=%s", job.id, job.attempt, by)
    return job
