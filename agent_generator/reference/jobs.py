"""A reference job and its timeline: its state is a pure function of time since submit.

A job of ``duration`` seconds is ``queued`` for the first 5 %, then ``running`` through
its operation's named phases (equal slices of the rest), then ``completed`` (or
``failed`` with the ``fail`` fault). ``progress`` changes only at those boundaries, so a
job shows about six changes however long it runs. A cancelled job freezes at the stage
it had when cancelled. Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import asyncio
import bisect
import enum
from dataclasses import dataclass, field
from typing import Any

from .faults import Faults

__all__ = ["PHASES", "Job", "Operation", "Stage"]

QUEUED_FRACTION = 0.05


class Operation(enum.StrEnum):
    """What a job does; each submit endpoint starts one kind."""

    DECOMPOSE = "decompose"
    GENERATE = "generate"
    UPDATE = "update"
    CUSTOMIZE = "customize"


PHASES: dict[Operation, tuple[str, ...]] = {
    Operation.DECOMPOSE: (
        "reading the goal",
        "matching blocks",
        "ordering steps",
        "checking inputs",
    ),
    Operation.GENERATE: (
        "reading the instructions",
        "choosing blocks",
        "filling inputs",
        "linking nodes",
        "validating the agent",
    ),
    Operation.UPDATE: (
        "reading the agent",
        "understanding the request",
        "applying changes",
        "relinking nodes",
        "validating the agent",
    ),
    Operation.CUSTOMIZE: (
        "reading the template",
        "understanding the request",
        "applying changes",
        "validating the agent",
    ),
}

_ERROR_TEXTS = {
    "llm_timeout": "The language model did not answer in time.",
    "llm_error": "The language model returned an error.",
    "rate_limit": "The language model's rate limit was reached.",
    "validation_error": "The generated agent did not pass validation.",
}


@dataclass(frozen=True)
class Stage:
    """What a poll shows: status and progress (a change of any of them wakes long-polls)."""

    status: str
    percent: int
    phase: str

    @property
    def terminal(self) -> bool:
        return self.status in {"completed", "failed", "cancelled"}


@dataclass(kw_only=True, eq=False)
class Job:
    """One submitted job; ``result`` (or ``error``) is decided at submit, shown at the end."""

    id: str
    operation: Operation
    created_at: float
    duration: float
    faults: Faults
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    idempotency_key: str | None = None
    cancelled: Stage | None = None
    cancelled_at: float | None = None
    polls: int = 0
    waiters: set[asyncio.Future[None]] = field(default_factory=set)

    def _boundaries(self) -> list[float]:
        phases = len(PHASES[self.operation])
        queued = self.duration * QUEUED_FRACTION
        step = (self.duration - queued) / phases
        return [self.created_at + queued + i * step for i in range(phases)] + [
            self.created_at + self.duration
        ]

    @property
    def ends_at(self) -> float:
        """When the job ends (or ended): its cancel time or the end of its timeline."""
        return (
            self.cancelled_at if self.cancelled_at is not None else self.created_at + self.duration
        )

    def stage(self, now: float) -> Stage:
        """The job's stage at ``now``."""
        if self.cancelled is not None:
            return self.cancelled
        phases = PHASES[self.operation]
        index = bisect.bisect_right(self._boundaries(), now)
        if index == 0:
            return Stage("queued", 0, "waiting in the queue")
        if index <= len(phases):
            return Stage("running", 5 + (index - 1) * 95 // len(phases), phases[index - 1])
        if self.error is not None:
            return Stage("failed", 5 + (len(phases) - 1) * 95 // len(phases), phases[-1])
        return Stage("completed", 100, "done")

    def next_change_at(self, now: float) -> float | None:
        """When the stage next changes after ``now``; None once the job is terminal."""
        if self.stage(now).terminal:
            return None
        boundaries = self._boundaries()
        return boundaries[bisect.bisect_right(boundaries, now)]

    def cancel(self, now: float) -> bool:
        """Freeze the job as ``cancelled`` (False, and no change, if it already ended)."""
        stage = self.stage(now)
        if stage.terminal:
            return False
        self.cancelled = Stage("cancelled", stage.percent, stage.phase)
        self.cancelled_at = now
        for waiter in list(self.waiters):
            waiter.get_loop().call_soon_threadsafe(_wake, waiter)
        return True

    def fail_with(self, *, error_type: str, message: str | None = None) -> None:
        """Decide at submit that the job ends ``failed``."""
        self.error_type = error_type
        self.error = message or _ERROR_TEXTS.get(error_type, f"Generation failed ({error_type}).")

    def as_json(self, now: float) -> dict[str, Any]:
        """The Job object a poll answers."""
        stage = self.stage(now)
        body: dict[str, Any] = {
            "job_id": self.id,
            "status": stage.status,
            "progress": {"percent": stage.percent, "phase": stage.phase},
        }
        if stage.status == "completed":
            body["result"] = self.result
        elif stage.status == "failed":
            body["error"] = self.error
            body["error_type"] = self.error_type
        return body


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
