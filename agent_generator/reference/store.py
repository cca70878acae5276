"""Jobs, idempotency keys and counters of the reference service: in memory, or in SQLite.

:class:`JobStore` keeps jobs in this process's memory (tests, and ``python -m
agent_generator.reference`` by default). :class:`SqliteJobStore` keeps them in memory too,
and also in a SQLite file (Python's ``sqlite3``), so that a restarted service answers polls
for the jobs of the one before it and recognises their ``Idempotency-Key``: a job is a
timeline fixed at submit (``jobs.py``), so its row holds the request's outcome, its key, its
start and its end, and it goes on where it was. :func:`open_store` picks one.

Nothing here blocks for long or runs in the background: each call is one short transaction,
and jobs that ended more than ``ttl_seconds`` ago are dropped lazily, whenever the store is
used. The fault counters (a job's polls, ``submit-503`` attempts) stay in memory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .faults import Faults
from .jobs import Job, Operation, Stage

__all__ = ["JobStore", "SqliteJobStore", "Stats", "StoreError", "open_store"]

logger = logging.getLogger(__name__)

#: Seconds a SQLite call waits for another process's write lock before it fails.
BUSY_TIMEOUT_SECONDS = 5.0
#: Expired rows are deleted at most this often (a job read from the file is checked anyway).
SWEEP_SECONDS = 1.0
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS reference_job (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    operation TEXT NOT NULL,
    created_at REAL NOT NULL,
    duration REAL NOT NULL,
    ends_at REAL NOT NULL,
    faults TEXT NOT NULL,
    result TEXT NOT NULL,
    error TEXT,
    error_type TEXT,
    cancelled TEXT,
    cancelled_at REAL
);
CREATE INDEX IF NOT EXISTS reference_job_ends_at ON reference_job (ends_at);
"""
_COLUMNS = (
    "id, idempotency_key, operation, created_at, duration, ends_at, faults, result, "
    "error, error_type, cancelled, cancelled_at"
)


class StoreError(ValueError):
    """The store file cannot be opened or is not a store of this version."""


@dataclass(kw_only=True)
class Stats:
    """Counters a test can read: every submit request (retries too), created jobs, polls
    and deletes, and submit requests per ``Idempotency-Key``. They count this process's
    requests only, even with a store file."""

    submits: int = 0
    jobs_created: int = 0
    polls: int = 0
    deletes: int = 0
    submits_by_key: dict[str, int] = field(default_factory=dict)

    def clear(self) -> None:
        """Zero every counter in place (holders of this object see the reset)."""
        self.submits = self.jobs_created = self.polls = self.deletes = 0
        self.submits_by_key.clear()

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class JobStore:
    """Jobs by id, the job of each ``Idempotency-Key``, and per-key fault counters.

    The embedded service may be used from several threads: changes hold a lock.
    """

    def __init__(self, *, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._jobs: dict[str, Job] = {}
        self._by_key: dict[str, str] = {}
        self._fault_attempts: Counter[str] = Counter()
        self._lock = threading.RLock()

    def clear(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._by_key.clear()
            self._fault_attempts.clear()

    def close(self) -> None:
        """Release what the store holds (nothing, in memory)."""

    def prune(self, *, now: float) -> None:
        """Forget jobs that ended more than ``ttl_seconds`` before ``now``."""
        with self._lock:
            for job in list(self._jobs.values()):
                if job.ends_at + self.ttl_seconds < now:
                    self.forget(job)

    def new_id(self) -> str:
        return secrets.token_urlsafe(16)

    def add(self, job: Job) -> Job:
        """Keep ``job``, unless its key already has a job: the job that has the key."""
        with self._lock:
            if job.idempotency_key is not None:
                existing = self.by_key(job.idempotency_key)
                if existing is not None:
                    return existing
            self._remember(job)
            return job

    def save(self, job: Job) -> None:
        """Keep a change of ``job`` (its cancel); in memory the object is the record."""

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def by_key(self, key: str) -> Job | None:
        job_id = self._by_key.get(key)
        return self._jobs.get(job_id) if job_id is not None else None

    def forget(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
            key = job.idempotency_key
            if key is not None and self._by_key.get(key) == job.id:
                del self._by_key[key]

    def fault_attempt(self, counter: str) -> int:
        """Count one more submit that carries submit faults, under ``counter``.

        The app uses the ``Idempotency-Key`` as counter (keyless submits share one counter
        per fault header), so "the first N submits with this key" fail.
        """
        with self._lock:
            self._fault_attempts[counter] += 1
            return self._fault_attempts[counter]

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        if job.idempotency_key is not None:
            self._by_key[job.idempotency_key] = job.id


class SqliteJobStore(JobStore):
    """A :class:`JobStore` whose jobs are also rows of a SQLite file, read back on a miss.

    Jobs in memory hold ``time.monotonic()`` times; rows hold Unix times (``time.time()``),
    which mean the same after a restart. One connection, shared by threads under the lock;
    WAL, so a reader never waits for a writer.
    """

    def __init__(self, *, path: Path, ttl_seconds: float) -> None:
        super().__init__(ttl_seconds=ttl_seconds)
        self.path = path
        self._offset = time.time() - time.monotonic()  # monotonic + offset = Unix time
        self._swept_at = -float("inf")
        try:
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the job store ({exc})") from exc
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise
        logger.info("job store opened path=%s", path)

    def _prepare(self) -> None:
        """Check the file's version, set WAL, and make the table if it is new."""
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StoreError(f"{self.path}: a store of version {version}, not {SCHEMA_VERSION}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the job store ({exc})") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def clear(self) -> None:
        with self._lock:
            super().clear()
            self._db.execute("DELETE FROM reference_job")

    def prune(self, *, now: float) -> None:
        with self._lock:
            super().prune(now=now)
            if now >= self._swept_at + SWEEP_SECONDS:
                self._swept_at = now
                oldest = self._unix(now - self.ttl_seconds)
                cursor = self._db.execute("DELETE FROM reference_job WHERE ends_at < ?", (oldest,))
                if cursor.rowcount:
                    logger.info("jobs expired count=%s", cursor.rowcount)

    def add(self, job: Job) -> Job:
        with self._lock:
            key = job.idempotency_key
            if key is not None and (existing := self.by_key(key)) is not None:
                return existing
            insert = f"INSERT INTO reference_job ({_COLUMNS}) VALUES ({', '.join('?' * 12)})"
            try:
                self._db.execute(insert, self._row(job))
            except sqlite3.IntegrityError:
                # Another process took the key (or an expired row of it not yet swept).
                self._db.execute(
                    "DELETE FROM reference_job WHERE idempotency_key = ? AND ends_at < ?",
                    (key, self._unix(time.monotonic() - self.ttl_seconds)),
                )
                if key is not None and (existing := self.by_key(key)) is not None:
                    return existing
                self._db.execute(insert, self._row(job))
            self._remember(job)
            return job

    def save(self, job: Job) -> None:
        with self._lock:
            row = self._row(job)
            self._db.execute(
                "UPDATE reference_job SET ends_at = ?, cancelled = ?, cancelled_at = ? "
                "WHERE id = ?",
                (row[5], row[10], row[11], job.id),
            )

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return super().get(job_id) or self._load("id", job_id)

    def by_key(self, key: str) -> Job | None:
        with self._lock:
            return super().by_key(key) or self._load("idempotency_key", key)

    def forget(self, job: Job) -> None:
        with self._lock:
            super().forget(job)
            self._db.execute("DELETE FROM reference_job WHERE id = ?", (job.id,))

    def _unix(self, monotonic: float) -> float:
        return monotonic + self._offset

    def _load(self, column: str, value: str) -> Job | None:
        """The unexpired job of the row whose ``column`` is ``value``, kept in memory."""
        oldest = self._unix(time.monotonic() - self.ttl_seconds)
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM reference_job WHERE {column} = ? AND ends_at >= ?",
            (value, oldest),
        ).fetchone()
        if row is None:
            return None
        job = self._job(row)
        self._remember(job)
        logger.info("job loaded id=%s", job.id)
        return job

    def _row(self, job: Job) -> tuple[Any, ...]:
        cancelled = job.cancelled
        return (
            job.id,
            job.idempotency_key,
            job.operation.value,
            self._unix(job.created_at),
            job.duration,
            self._unix(job.ends_at),
            json.dumps(dataclasses.asdict(job.faults)),
            json.dumps(job.result),
            job.error,
            job.error_type,
            None if cancelled is None else json.dumps(dataclasses.astuple(cancelled)),
            None if job.cancelled_at is None else self._unix(job.cancelled_at),
        )

    def _job(self, row: tuple[Any, ...]) -> Job:
        (job_id, key, operation, created_at, duration, _ends_at) = row[:6]
        (faults, result, error, error_type, cancelled, cancelled_at) = row[6:]
        return Job(
            id=job_id,
            operation=Operation(operation),
            created_at=created_at - self._offset,
            duration=duration,
            faults=Faults(**json.loads(faults)),
            result=json.loads(result),
            error=error,
            error_type=error_type,
            idempotency_key=key,
            cancelled=None if cancelled is None else Stage(*json.loads(cancelled)),
            cancelled_at=None if cancelled_at is None else cancelled_at - self._offset,
        )


def open_store(*, path: Path | str | None, ttl_seconds: float) -> JobStore:
    """The in-memory store (``path`` None), or the SQLite store of the file ``path``.

    Raises :class:`StoreError` when the file cannot be opened.
    """
    if path is None:
        return JobStore(ttl_seconds=ttl_seconds)
    return SqliteJobStore(path=Path(path), ttl_seconds=ttl_seconds)
