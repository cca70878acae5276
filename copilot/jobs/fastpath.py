"""Event writes in ONE statement on PostgreSQL: the runner's hot path.

A runner following 2,000 jobs logs a few hundred progress and status events a second. Through
the ORM each one costs five round trips (``BEGIN``, ``SELECT … FOR UPDATE``, ``INSERT``,
``UPDATE``, ``COMMIT``) and, on a busy machine, a wait for the GIL after each of them; that
was the runner's limit in ``bench/runner_load.py``. Here the same change is one statement in
autocommit::

    WITH job AS (UPDATE job row: last_event_seq + 1 … WHERE id, lease and status allow it
                 RETURNING id, last_event_seq)
    INSERT INTO event (job, seq, …) SELECT … FROM job RETURNING id

The ``UPDATE`` takes the job's row lock, exactly as ``SELECT … FOR UPDATE`` does on the ORM
path (:func:`copilot.jobs.events.job_locked`), so ``seq`` stays gap-free with any number of
writers; under READ COMMITTED a writer that waited for the lock re-reads the row and numbers
after the winner.

A status change (:func:`transition_update`, for :mod:`copilot.jobs.transitions`) is the same
statement. It is guarded by the status and attempt of the caller's copy of the job, so the
status it leaves is known before it runs; the caller passes the new field values and the
event's data ready-made, and the statement only stores them.

When a statement changes nothing (unknown job, lease lost, a status that does not allow the
change, a row that moved on) it returns ``None`` and the caller takes the ORM path, which
raises the precise error, or writes if the row allows it after all. Other databases (SQLite)
always take the ORM path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from copilot.jobs.models import GenerationJob, JobEvent


def available() -> bool:
    """True where the statements of this module run (PostgreSQL)."""
    return connection.vendor == "postgresql"


def _column(meta, name: str) -> str:
    return connection.ops.quote_name(meta.get_field(name).column)


def _value(meta, name: str, python_value: Any) -> Any:
    return meta.get_field(name).get_db_prep_save(python_value, connection)


def _job_guard(
    *,
    pk: uuid.UUID,
    statuses: list[str],
    lease_owner: str | None,
    now: datetime,
    attempt: int | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE that lets a write happen: this job, one of ``statuses``, ``lease_owner`` its
    owner (and this ``attempt``, when given); the same test as ``events.job_locked``."""
    job = GenerationJob._meta
    where = [
        f"{_column(job, 'id')} = %s",
        f"{_column(job, 'status')} IN ({', '.join(['%s'] * len(statuses))})",
    ]
    params: list[Any] = [_value(job, "id", pk), *statuses]
    if attempt is not None:
        where.append(f"{_column(job, 'attempt')} = %s")
        params.append(attempt)
    if lease_owner is not None:
        # The fence: a takeover changes lease_owner (copilot.jobs.leases).
        where.append(f"{_column(job, 'lease_owner')} = %s")
        params.append(lease_owner)
    return " AND ".join(where), params


def _event_columns() -> str:
    meta = JobEvent._meta
    return ", ".join(_column(meta, n) for n in ("job", "seq", "type", "data", "created_at"))


def _stored_event(**fields: Any) -> JobEvent:
    """A JobEvent for a row the statement just inserted (no second read)."""
    event = JobEvent(**fields)
    event._state.adding = False
    event._state.db = connection.alias
    return event


def _job_pk(job_id: uuid.UUID | str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(job_id))
    except ValueError:
        return None


def event_insert(
    *,
    job_id: uuid.UUID | str,
    type: str,
    data: Mapping[str, Any],
    lease_owner: str | None,
    statuses: Iterable[str],
    progress: Mapping[str, Any] | None = None,
) -> JobEvent | None:
    """Append the job's next event if its status is in ``statuses`` (and ``lease_owner``
    still holds it, when given); set ``progress`` on the row too, when given.

    Returns the stored event, or None when nothing was written or the database is not
    PostgreSQL (see the module docstring).
    """
    pk = _job_pk(job_id)
    if pk is None or not available():
        return None
    now = timezone.now()
    job_meta, event_meta = GenerationJob._meta, JobEvent._meta
    seq = _column(job_meta, "last_event_seq")
    sets = [f"{seq} = {seq} + 1", f"{_column(job_meta, 'updated_at')} = %s"]
    set_params: list[Any] = [_value(job_meta, "updated_at", now)]
    if progress is not None:
        sets.append(f"{_column(job_meta, 'progress')} = %s")
        set_params.append(_value(job_meta, "progress", dict(progress)))
    where, where_params = _job_guard(
        pk=pk, statuses=list(statuses), lease_owner=lease_owner, now=now
    )
    sql = (
        f"WITH job AS (UPDATE {connection.ops.quote_name(job_meta.db_table)} "
        f"SET {', '.join(sets)} WHERE {where} "
        f"RETURNING {_column(job_meta, 'id')} AS id, {seq} AS seq) "
        f"INSERT INTO {connection.ops.quote_name(event_meta.db_table)} ({_event_columns()}) "
        "SELECT job.id, job.seq, %s, %s, %s FROM job "
        f"RETURNING {_column(event_meta, 'id')}, {_column(event_meta, 'seq')}"
    )
    params = [
        *set_params,
        *where_params,
        type,
        _value(event_meta, "data", dict(data)),
        _value(event_meta, "created_at", now),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return _stored_event(
        id=row[0], job_id=pk, seq=row[1], type=type, data=dict(data), created_at=now
    )


def transition_update(
    *,
    job: GenerationJob,
    lease_owner: str | None,
    assignments: Mapping[str, Any],
    if_unset: Mapping[str, Any],
    event_type: str,
    event_data: Mapping[str, Any],
    now: datetime,
) -> tuple[GenerationJob, JobEvent] | None:
    """Write a transition of ``job`` in one statement, if the row still has ``job``'s status
    and attempt (and ``lease_owner`` still holds it, when given).

    Sets ``assignments`` (field -> value), sets ``if_unset`` where the row has NULL, and
    appends the next event: ``event_type`` with ``event_data``, stored as given. Returns the
    job as now stored and the event; None when nothing was written or the database is not
    PostgreSQL.
    """
    pk = _job_pk(job.pk)
    if pk is None or not available():
        return None
    job_meta, event_meta = GenerationJob._meta, JobEvent._meta
    seq = _column(job_meta, "last_event_seq")
    sets = [f"{seq} = {seq} + 1"]
    set_params: list[Any] = []
    for name, python_value in {**assignments, "updated_at": now}.items():
        sets.append(f"{_column(job_meta, name)} = %s")
        set_params.append(_value(job_meta, name, python_value))
    for name, python_value in if_unset.items():
        column = _column(job_meta, name)
        sets.append(f"{column} = COALESCE({column}, %s)")
        set_params.append(_value(job_meta, name, python_value))
    where, where_params = _job_guard(
        pk=pk, statuses=[job.status], attempt=job.attempt, lease_owner=lease_owner, now=now
    )
    sql = (
        f"WITH job AS (UPDATE {connection.ops.quote_name(job_meta.db_table)} "
        f"SET {', '.join(sets)} WHERE {where} RETURNING *), "
        f"event AS (INSERT INTO {connection.ops.quote_name(event_meta.db_table)} "
        f"({_event_columns()}) SELECT job.{_column(job_meta, 'id')}, job.{seq}, %s, %s, %s "
        f"FROM job RETURNING {_column(event_meta, 'id')} AS id) "
        "SELECT job.*, event.id AS copilot_event_id FROM job, event"
    )
    params = [
        *set_params,
        *where_params,
        event_type,
        _value(event_meta, "data", dict(event_data)),
        _value(event_meta, "created_at", now),
    ]
    rows = list(GenerationJob.objects.raw(sql, params))
    if not rows:
        return None
    stored = rows[0]
    # raw() sets the extra column as an instance attribute the model does not declare; take
    # it off, so the caller gets a plain GenerationJob.
    event_id: int = vars(stored).pop("copilot_event_id")
    event = _stored_event(
        id=event_id,
        job_id=stored.pk,
        seq=stored.last_event_seq,
        type=event_type,
        data=dict(event_data),
        created_at=now,
    )
    return stored, event
