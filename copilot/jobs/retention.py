"""Pruning old finished jobs and their events in batches: short transactions, no lock on live jobs.

Deleting half a million jobs in one transaction holds its locks for a minute and a half and
writes all of its WAL at once; Django's ``delete()`` would first load every job into memory
(its collector follows the events relation). Here each batch is its own transaction:

1. the next ``batch_size`` finished jobs, oldest first, walking ``(created_at, id)`` on the
   ``created_at`` index from where the last batch ended (deleted rows are never read
   again); on PostgreSQL locked ``FOR UPDATE SKIP LOCKED``, so a job someone is retrying
   at that moment is skipped, not waited for;
2. ``DELETE`` of those jobs' events, then of the jobs, set-based: on PostgreSQL all of it is
   one statement (the ids stay in the server), elsewhere one ``DELETE`` each.

At a million jobs a batch's time is about half that statement and half PostgreSQL's check
of the events' foreign key at commit (one lookup per deleted job, which only dropping the
constraint would save); a batch's size barely changes the total (bench/RESULTS.md).

Only jobs in a terminal state are ever selected, and the locks are those jobs' own: a live
job's event writes never wait for a batch. Only :class:`~copilot.jobs.models.JobEvent`
refers to jobs, so nothing is left orphaned. A ``KeyboardInterrupt`` (Ctrl-C) rolls back the
batch under way; the batches before it stay pruned, and :class:`PruneResult` says how many.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import EmptyResultSet
from django.db import connections, router, transaction
from django.db.models import QuerySet

from copilot.jobs.keyset import newer_than
from copilot.jobs.models import GenerationJob, JobEvent

#: Jobs per batch by default: a batch (and ten events a job) takes a fraction of a second.
DEFAULT_BATCH_SIZE = 2_000
#: Ids per ``IN`` list where a batch's ids are sent as parameters (SQLite's path).
IN_LIST_MAX = 900


@dataclass
class PruneResult:
    """What a prune did (or, dry, would do): jobs and events, and whether Ctrl-C stopped it."""

    jobs: int = 0
    events: int = 0
    interrupted: bool = False


def prunable_jobs(*, finished_before: datetime, statuses: Iterable[str]) -> QuerySet:
    """Finished jobs in ``statuses`` (terminal ones only, whatever is asked) that ended before
    ``finished_before``; also ``created_at`` before it, which always holds, for the index."""
    terminal = [s for s in statuses if s in GenerationJob.TERMINAL_STATUSES]
    return GenerationJob.objects.filter(
        status__in=terminal, finished_at__lt=finished_before, created_at__lt=finished_before
    )


def prune_count(
    *, finished_before: datetime, statuses: Iterable[str], events: bool = True
) -> PruneResult:
    """How many jobs (and ``events``: their events) a prune would delete, counted in the
    database (no ids loaded); the events' count is the slower one (a join)."""
    jobs = prunable_jobs(finished_before=finished_before, statuses=statuses)
    found = JobEvent.objects.filter(job_id__in=jobs.values("pk")).count() if events else 0
    return PruneResult(jobs=jobs.count(), events=found)


def jobs_prune(
    *,
    finished_before: datetime,
    statuses: Iterable[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[PruneResult], None] | None = None,
) -> PruneResult:
    """Delete the prunable jobs and their events, ``batch_size`` jobs per transaction.

    ``on_batch`` hears the running totals after each committed batch (progress lines).
    """
    statuses = list(statuses)
    done = PruneResult()
    after: tuple[datetime, uuid.UUID] | None = None
    try:
        while True:
            batch = _prune_batch(
                finished_before=finished_before, statuses=statuses, size=batch_size, after=after
            )
            if batch is None:
                return done
            after, jobs, events = batch
            done.jobs += jobs
            done.events += events
            if on_batch is not None:
                on_batch(done)
    except KeyboardInterrupt:
        done.interrupted = True
        return done


def _prune_batch(
    *,
    finished_before: datetime,
    statuses: list[str],
    size: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> tuple[tuple[datetime, uuid.UUID], int, int] | None:
    """One batch, in one transaction: (where it ended, jobs, events), or None when none is left."""
    jobs = prunable_jobs(finished_before=finished_before, statuses=statuses)
    if after is not None:
        at, last = after
        jobs = jobs.filter(newer_than(created_at=at, job_id=last))
    alias = router.db_for_write(GenerationJob)
    connection = connections[alias]
    batch = jobs.order_by("created_at", "id").values_list("created_at", "id")
    with transaction.atomic(using=alias):
        if connection.vendor == "postgresql":
            locked = batch.select_for_update(skip_locked=True)[:size]
            return _prune_batch_postgresql(batch=locked, alias=alias)
        # SQLite: one writer at a time, so there is no live job's lock to skip.
        return _prune_batch_by_ids(keys=list(batch[:size]), connection=connection)


def _prune_batch_postgresql(
    *, batch: QuerySet, alias: str
) -> tuple[tuple[datetime, uuid.UUID], int, int] | None:
    """The batch in one statement: lock the next jobs (``SKIP LOCKED``), delete their events
    and them, and return the counts and the last key.

    One round trip and one plan per batch instead of three, with the ids passed inside the
    server as an array (``= ANY(ARRAY(…))``: an index scan whatever the batch's size) rather
    than as thousands of parameters. Measured at a million jobs, this statement is half of a
    batch's time; the other half is PostgreSQL's own check of the events' foreign key at
    commit (one lookup per deleted job), which only dropping that constraint would save.
    """
    connection = connections[alias]
    try:
        select, params = batch.query.get_compiler(using=alias).as_sql()
    except EmptyResultSet:  # no terminal status asked for: nothing can match
        return None
    quote = connection.ops.quote_name
    events = quote(JobEvent._meta.db_table)
    jobs = quote(GenerationJob._meta.db_table)
    job_column = quote(JobEvent._meta.get_field("job").column)
    key = GenerationJob._meta.pk
    assert key is not None and key.column is not None
    pk = quote(key.column)
    statement = (
        f"WITH batch (created_at, id) AS MATERIALIZED ({select}), "
        f"gone_events AS (DELETE FROM {events} "
        f"WHERE {job_column} = ANY(ARRAY(SELECT id FROM batch)) RETURNING 1), "
        f"gone_jobs AS (DELETE FROM {jobs} WHERE {pk} = ANY(ARRAY(SELECT id FROM batch)) "
        "RETURNING 1) "
        "SELECT last.created_at, last.id, (SELECT count(*) FROM gone_jobs), "
        "(SELECT count(*) FROM gone_events) "
        "FROM (SELECT created_at, id FROM batch ORDER BY created_at DESC, id DESC LIMIT 1) last"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    if row is None:
        return None
    created_at, last, jobs_deleted, events_deleted = row
    return (created_at, last), jobs_deleted, events_deleted


def _prune_batch_by_ids(
    *, keys: list[tuple[datetime, uuid.UUID]], connection
) -> tuple[tuple[datetime, uuid.UUID], int, int] | None:
    """The batch whose keys were read: ``DELETE`` of their events, then of them (SQLite)."""
    if not keys:
        return None
    pk = GenerationJob._meta.pk
    assert pk is not None and pk.column is not None
    ids = [pk.get_db_prep_value(job_id, connection) for _, job_id in keys]
    quote = connection.ops.quote_name
    events = jobs_deleted = 0
    with connection.cursor() as cursor:
        # In slices of IN_LIST_MAX ids: SQLite takes at most 32,766 parameters a statement
        # (999 before 3.32), and --batch-size goes up to 50,000.
        for start in range(0, len(ids), IN_LIST_MAX):
            part = ids[start : start + IN_LIST_MAX]
            marks = ", ".join(["%s"] * len(part))
            cursor.execute(
                f"DELETE FROM {quote(JobEvent._meta.db_table)} "
                f"WHERE {quote(JobEvent._meta.get_field('job').column)} IN ({marks})",
                part,
            )
            events += cursor.rowcount
            cursor.execute(
                f"DELETE FROM {quote(GenerationJob._meta.db_table)} "
                f"WHERE {quote(pk.column)} IN ({marks})",
                part,
            )
            jobs_deleted += cursor.rowcount
    return keys[-1], jobs_deleted, events
