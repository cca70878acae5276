"""In-memory jobs, idempotency keys and counters of the reference service.

Nothing here blocks or runs in the background: jobs that ended more than ``ttl_seconds``
ago are dropped lazily, whenever the store is used.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .jobs import Job

__all__ = ["JobStore", "Stats"]


@dataclass(kw_only=True)
class Stats:
    """Counters a test can read: every submit request (retries too), created jobs, polls
    and deletes, and submit requests per ``Idempotency-Key``."""

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
    """Jobs by id, the job of each ``Idempotency-Key``, and per-key fault counters."""

    def __init__(self, *, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._jobs: dict[str, Job] = {}
        self._by_key: dict[str, str] = {}
        self._fault_attempts: Counter[str] = Counter()

    def clear(self) -> None:
        self._jobs.clear()
        self._by_key.clear()
        self._fault_attempts.clear()

    def prune(self, *, now: float) -> None:
        """Forget jobs that ended more than ``ttl_seconds`` before ``now``.

        Iterates over a copy: the embedded service may be used from several threads.
        """
        for job in list(self._jobs.values()):
            if job.ends_at + self.ttl_seconds < now:
                self.forget(job)

    def new_id(self) -> str:
        return secrets.token_urlsafe(16)

    def add(self, job: Job) -> None:
        self._jobs[job.id] = job
        if job.idempotency_key is not None:
            self._by_key[job.idempotency_key] = job.id

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def by_key(self, key: str) -> Job | None:
        job_id = self._by_key.get(key)
        return self._jobs.get(job_id) if job_id is not None else None

    def forget(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        if job.idempotency_key is not None and self._by_key.get(job.idempotency_key) == job.id:
            del self._by_key[job.idempotency_key]

    def fault_attempt(self, counter: str) -> int:
        """Count one more submit that carries submit faults, under ``counter``.

        The app uses the ``Idempotency-Key`` as counter (keyless submits share one counter
        per fault header), so "the first N submits with this key" fail.
        """
        self._fault_attempts[counter] += 1
        return self._fault_attempts[counter]
