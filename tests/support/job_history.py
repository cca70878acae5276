"""Old jobs in bulk, with their events, for the retention (pruning) tests.

Made with ``bulk_create`` rather than through the services: a prune test needs hundreds of
jobs finished weeks ago, which no job could reach by running.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from copilot.jobs.models import GenerationJob, JobEvent

__all__ = ["fill"]


def fill(
    user,
    *,
    count: int,
    status: str,
    days_ago: float,
    events_per_job: int,
    ties_every: int = 3,
) -> list[GenerationJob]:
    """``count`` jobs of ``user`` created and (when terminal) finished ``days_ago``, each with
    ``events_per_job`` events (seq 1..N). Their ``created_at`` cycle through ``ties_every``
    seconds back, so some share one and pruning's order falls back on the id."""
    at = timezone.now() - timedelta(days=days_ago)
    terminal = status in GenerationJob.TERMINAL_STATUSES
    jobs = GenerationJob.objects.bulk_create(
        GenerationJob(
            owner=user,
            kind="decompose",
            status=status,
            created_at=at - timedelta(seconds=i % ties_every),
            finished_at=at if terminal else None,
            last_event_seq=events_per_job,
        )
        for i in range(count)
    )
    JobEvent.objects.bulk_create(
        JobEvent(job=job, seq=seq, type="status", data={"status": status})
        for job in jobs
        for seq in range(1, events_per_job + 1)
    )
    return jobs
