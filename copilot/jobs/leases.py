"""Leases: how runners agree, through the database alone, on who drives which job.

A runner *claims* a job with one conditional UPDATE (the job is active and nobody holds an
unexpired lease on it), renews the leases it holds in one UPDATE every half lease, and
releases them when it stops. Whoever loses a race gets 0 rows updated and leaves the job
alone; a runner whose lease ran out finds so on its next write (``LeaseLost``) and stops.
Nothing depends on a channel-layer message arriving: every runner scans for jobs nobody
holds (never claimed, released, or with an expired lease) and takes them over.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from copilot.jobs.models import GenerationJob


def jobs_claim(
    *, job_ids: Iterable[uuid.UUID | str], owner: str, lease_seconds: float
) -> list[uuid.UUID]:
    """Take the lease on each of ``job_ids`` that is active and that nobody holds, in one
    UPDATE; return the ids this runner got (oldest job first).

    Two runners claiming the same job at once both run the conditional UPDATE; the second
    waits for the row lock, finds the job no longer claimable, and leaves it alone.
    """
    ids = list(job_ids)
    if not ids:
        return []
    now = timezone.now()
    expires = now + timedelta(seconds=lease_seconds)
    with transaction.atomic():
        updated = (
            GenerationJob.objects.stale(now=now)
            .filter(pk__in=ids)
            .update(lease_owner=owner, lease_expires_at=expires)
        )
        if not updated:
            return []
        # The rows this UPDATE wrote carry exactly this owner and expiry.
        return list(
            GenerationJob.objects.filter(pk__in=ids, lease_owner=owner, lease_expires_at=expires)
            .order_by("created_at")
            .values_list("id", flat=True)
        )


def jobs_claim_stale(*, owner: str, lease_seconds: float, limit: int) -> list[uuid.UUID]:
    """Claim up to ``limit`` jobs nobody holds, oldest first; return their ids.

    On PostgreSQL the candidates are read with ``FOR UPDATE SKIP LOCKED``, so runners scanning
    at the same moment split the jobs instead of queueing on each other's row locks; the
    conditional UPDATE in :func:`jobs_claim` is what makes a double claim impossible anyway.
    """
    if limit <= 0:
        return []
    with transaction.atomic():
        candidates = list(
            GenerationJob.objects.stale(now=timezone.now())
            .order_by("created_at")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:limit]
        )
        return jobs_claim(job_ids=candidates, owner=owner, lease_seconds=lease_seconds)


def leases_renew(
    *, owner: str, job_ids: Iterable[uuid.UUID], lease_seconds: float
) -> set[uuid.UUID]:
    """Extend the leases this runner still holds among ``job_ids``; return those ids.

    A lease that ran out but that nobody took over is still this runner's to renew; one that
    another runner claimed is not (its ``lease_owner`` changed), and drops out of the answer.
    """
    ids = list(job_ids)
    if not ids:
        return set()
    held = GenerationJob.objects.active().filter(pk__in=ids, lease_owner=owner)
    with transaction.atomic():
        held.update(lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds))
        return set(held.values_list("id", flat=True))


def leases_release(*, owner: str, job_ids: Iterable[uuid.UUID] | None = None) -> int:
    """Give up this runner's leases (all of them, or ``job_ids``), leaving the jobs resumable."""
    jobs = GenerationJob.objects.filter(lease_owner=owner)
    if job_ids is not None:
        jobs = jobs.filter(pk__in=list(job_ids))
    return jobs.update(lease_owner="", lease_expires_at=None)


def cancel_requests(*, owner: str) -> list[uuid.UUID]:
    """The active jobs this runner holds that a user or an admin asked to cancel."""
    return list(
        GenerationJob.objects.active()
        .filter(lease_owner=owner, cancel_requested_at__isnull=False)
        .values_list("id", flat=True)
    )
