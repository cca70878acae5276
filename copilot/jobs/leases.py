"""Leases: how runners agree, through the database alone, on who drives which job.

Each runner keeps a heartbeat row (:class:`~copilot.jobs.models.RunnerHeartbeat`) and renews
it once a second in ONE UPDATE, whatever the number of jobs it holds. A job's lease is its
``lease_owner``: it stays that runner's while the runner's heartbeat is fresh, and becomes
claimable when the heartbeat is older than ``COPILOT_RUNNER_DEAD_SECONDS`` (or gone).

A runner *claims* a job with one conditional UPDATE (the job is active and its owner, if
any, is not alive); whoever loses a race gets 0 rows and leaves the job alone. Every write a
runner makes is fenced by ``lease_owner = me``: a takeover changes ``lease_owner``, so a
runner that was only slow (a long pause, a stalled network) finds on its next write that it
lost the job (``LeaseLost``) and stops without writing. Nothing depends on a channel-layer
message arriving: every runner scans for claimable jobs and takes them over.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from copilot.jobs.models import GenerationJob, RunnerHeartbeat, dead_before

#: A heartbeat this many dead intervals old is deleted by whoever finds it.
FORGET_AFTER_DEAD_INTERVALS = 10

#: No later than this process's start: a same-pid heartbeat older than it is a predecessor's.
_PROCESS_SEEN = timezone.now()


def jobs_claim(*, job_ids: Iterable[uuid.UUID | str], owner: str) -> list[uuid.UUID]:
    """Take each of ``job_ids`` that is active and that no live runner holds, in one
    UPDATE; return the ids this runner got (oldest job first).

    The rows are locked first, so the UPDATE's view of the heartbeats is taken after any
    claim it waited for: two runners claiming the same job never both win.
    """
    ids = list(job_ids)
    if not ids:
        return []
    with transaction.atomic():
        locked = list(
            GenerationJob.objects.select_for_update()
            .filter(pk__in=ids)
            .values_list("id", flat=True)
        )
        updated = (
            GenerationJob.objects.stale()
            .filter(pk__in=locked)
            .update(lease_owner=owner, lease_expires_at=None)
        )
        if not updated:
            return []
        return list(
            GenerationJob.objects.active()
            .filter(pk__in=locked, lease_owner=owner)
            .order_by("created_at")
            .values_list("id", flat=True)
        )


def jobs_claim_stale(*, owner: str, limit: int) -> list[uuid.UUID]:
    """Claim up to ``limit`` jobs no live runner holds, oldest first; return their ids.

    Looking costs one SELECT; the claim (a transaction and an UPDATE) runs only when there is
    something to take. On PostgreSQL the candidates are locked with ``SKIP LOCKED``, so
    runners scanning at once split the jobs instead of queueing on each other's row locks.
    """
    if limit <= 0:
        return []
    candidates = list(
        GenerationJob.objects.stale().order_by("created_at").values_list("id", flat=True)[:limit]
    )
    if not candidates:
        return []
    with transaction.atomic():
        free = list(
            GenerationJob.objects.filter(pk__in=candidates)
            .order_by("created_at")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)
        )
        return jobs_claim(job_ids=free, owner=owner)


def heartbeat_beat(*, owner: str) -> bool:
    """Renew this runner's heartbeat (one UPDATE); False when it had gone stale or missing.

    A False means peers may have taken some of this runner's jobs: the heartbeat is written
    afresh, and the caller checks which jobs it still holds (:func:`leases_mine`).
    """
    now = timezone.now()
    fresh = RunnerHeartbeat.objects.filter(owner=owner, seen_at__gte=dead_before(now=now))
    if fresh.update(seen_at=now):
        return True
    RunnerHeartbeat.objects.update_or_create(
        owner=owner,
        defaults={"seen_at": now},
        create_defaults={"seen_at": now, "host": host_id(), "pid": os.getpid()},
    )
    return False


def heartbeat_forget(*, owner: str) -> None:
    """Delete this runner's heartbeat (it stops cleanly)."""
    RunnerHeartbeat.objects.filter(owner=owner).delete()


def dead_peers_forget(*, owner: str) -> int:
    """Delete the heartbeats of runners known dead: long silent ones, and those of this host
    whose process is gone (or whose pid is now this process's), so a restarted server takes
    its predecessor's jobs over at its first scan. One SELECT; a DELETE only when found."""
    now = timezone.now()
    host, me = host_id(), os.getpid()
    long_ago = now - timedelta(
        seconds=settings.COPILOT_RUNNER_DEAD_SECONDS * FORGET_AFTER_DEAD_INTERVALS
    )
    dead = []
    for other, other_host, pid, started_at, seen_at in RunnerHeartbeat.objects.exclude(
        owner=owner
    ).values_list("owner", "host", "pid", "started_at", "seen_at"):
        if seen_at < long_ago or (
            other_host == host and not _process_alive(pid, started_at=started_at, me=me)
        ):
            dead.append(other)
    if not dead:
        return 0
    return RunnerHeartbeat.objects.filter(owner__in=dead).delete()[0]


def host_id() -> str:
    """Where this runner's pid means something: the host name and, on Linux, the pid
    namespace. Two containers that share a host name (host networking) but not their pids
    are two hosts here, so neither takes the other's live pid for a dead one."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/pidns:{namespace}"


def _process_alive(pid: int, *, started_at: datetime, me: int) -> bool:
    """Whether the runner process ``pid`` of this host may still run."""
    if pid == me:
        # This process, or a predecessor that had the same pid (pid 1 in a container):
        # one that started before this process did is gone.
        return started_at >= _PROCESS_SEEN
    if pid <= 0:
        return True  # unknown: only its heartbeat tells
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


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


def leases_mine(*, owner: str) -> set[uuid.UUID]:
    """Every active job leased to this runner (a SELECT): those it follows, and any it does
    not (a claim whose answer a database outage lost, a drive that gave up waiting)."""
    return set(
        GenerationJob.objects.active().filter(lease_owner=owner).values_list("id", flat=True)
    )
