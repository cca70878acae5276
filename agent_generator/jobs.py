"""The job side of the protocol: operations, job ids, one poll answer, progress updates.

Pure data and validation, no I/O: ``client.py`` turns HTTP answers into these,
``polling.py`` decides what to do with them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from agent_generator.exceptions import InvalidResponse

__all__ = [
    "ACTIVE_STATUSES",
    "STATUSES",
    "TERMINAL_STATUSES",
    "JobUpdate",
    "Operation",
    "PollAnswer",
    "parse_poll_answer",
    "validate_job_id",
]

JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")

ACTIVE_STATUSES = frozenset({"queued", "pending", "running"})
"""Statuses that mean "keep polling"."""
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
"""Statuses that end the job."""
STATUSES = ACTIVE_STATUSES | TERMINAL_STATUSES


class Operation(StrEnum):
    """The four kinds of job, each with its own submit path."""

    DECOMPOSE = "decompose"
    """Turn a goal description into instructions (or questions / a refusal)."""
    GENERATE = "generate"
    """Build an agent from decomposed instructions."""
    UPDATE = "update"
    """Change an existing agent as requested."""
    CUSTOMIZE = "customize"
    """Modify a template agent as requested."""

    @property
    def path(self) -> str:
        """The submit path on the Agent Generator."""
        return _SUBMIT_PATHS[self]


_SUBMIT_PATHS: dict[Operation, str] = {
    Operation.DECOMPOSE: "/api/decompose-description",
    Operation.GENERATE: "/api/generate-agent",
    Operation.UPDATE: "/api/update-agent",
    Operation.CUSTOMIZE: "/api/template-modification",
}


def validate_job_id(job_id: object) -> str:
    """Return ``job_id`` if it matches ``^[A-Za-z0-9_-]{1,128}$``, else raise InvalidResponse.

    Every id goes through here before it is put into a URL.
    """
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        raise InvalidResponse(f"invalid job_id {job_id!r:.80}")
    return job_id


@dataclass(frozen=True, kw_only=True)
class JobUpdate:
    """What ``run()`` reports through ``on_update``, once per change.

    - ``submitted``: the service accepted the job (sent before the first poll; save
      ``job_id`` to resume later).
    - ``status``: the status changed (including to a terminal one); carries the progress
      seen in the same answer.
    - ``progress``: percent or phase changed (also when the status changed in the same
      answer: then it follows the ``status`` update), so following ``progress`` updates
      alone sees every progress change.
    """

    kind: Literal["submitted", "status", "progress"]
    job_id: str
    status: str
    percent: int | None = None
    phase: str | None = None


@dataclass(frozen=True, kw_only=True)
class PollAnswer:
    """One validated ``GET /api/jobs/{id}`` answer.

    ``result`` is the raw result object of a completed job (validated per operation by
    ``results.parse_result``); ``error``/``error_type`` are set for a failed job;
    ``retry_after`` is the answer's ``Retry-After`` in seconds, if any.
    """

    job_id: str
    status: str
    percent: int | None = None
    phase: str | None = None
    result: Mapping[str, Any] | None = field(default=None, repr=False)
    error: str | None = None
    error_type: str | None = None
    retry_after: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def parse_poll_answer(*, job_id: str, body: object, retry_after: float | None) -> PollAnswer:
    """Validate a poll answer body for ``job_id``; raise InvalidResponse if it breaks the protocol.

    A malformed ``progress`` (an optional extension) is dropped rather than failing the job.
    """
    if not isinstance(body, dict):
        raise InvalidResponse(f"job {job_id}: answer is not a JSON object")
    answered_id = body.get("job_id", job_id)
    if answered_id != job_id:
        raise InvalidResponse(f"job {job_id}: answer is for job_id {answered_id!r:.80}")
    status = body.get("status")
    if not isinstance(status, str) or status not in STATUSES:
        raise InvalidResponse(f"job {job_id}: unknown status {status!r:.80}")
    percent, phase = _parse_progress(body.get("progress"))
    result = body.get("result")
    if status == "completed" and not isinstance(result, dict):
        raise InvalidResponse(
            f"job {job_id}: status 'completed' without a result object "
            f"(got {type(result).__name__})"
        )
    error = body.get("error")
    error_type = body.get("error_type")
    return PollAnswer(
        job_id=job_id,
        status=status,
        percent=percent,
        phase=phase,
        result=result if status == "completed" else None,
        error=error if isinstance(error, str) and error else None,
        error_type=error_type if isinstance(error_type, str) and error_type else None,
        retry_after=retry_after,
    )


def _parse_progress(progress: object) -> tuple[int | None, str | None]:
    if not isinstance(progress, dict):
        return None, None
    raw_percent = progress.get("percent")
    percent: int | None = None
    if (
        isinstance(raw_percent, int | float)
        and not isinstance(raw_percent, bool)
        and math.isfinite(raw_percent)
    ):
        percent = min(max(int(raw_percent), 0), 100)
    raw_phase = progress.get("phase")
    phase = raw_phase[:200] if isinstance(raw_phase, str) else None
    return percent, phase
