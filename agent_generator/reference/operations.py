"""Compute a job's outcome at submit time, from its validated payload and its faults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .agents import GenerationRefusedError, generate
from .decompose import decompose
from .edits import UnclearRequestError, apply_request, unclear_questions
from .faults import Faults
from .jobs import Operation

__all__ = ["Outcome", "compute_outcome"]


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """Either ``result`` (shown on completion) or ``error``/``error_type`` (job fails)."""

    result: Any = None
    error: str | None = None
    error_type: str | None = None


def _result(operation: Operation, payload: dict[str, Any]) -> dict[str, Any]:
    match operation:
        case Operation.DECOMPOSE:
            return decompose(description=payload["description"])
        case Operation.GENERATE:
            return generate(instructions=payload["instructions"])
        case Operation.UPDATE | Operation.CUSTOMIZE:
            update = operation is Operation.UPDATE
            agent = payload["current_agent_json" if update else "template_agent_json"]
            request = payload["update_request" if update else "modification_request"]
            try:
                changed = apply_request(agent=agent, request=request, new_identity=not update)
            except UnclearRequestError as exc:
                return unclear_questions(exc.clause)
            return {"agent_json": changed, "success": True}


def compute_outcome(*, operation: Operation, payload: dict[str, Any], faults: Faults) -> Outcome:
    """The job's outcome; ``fail`` and ``bad-result`` faults override the real one."""
    if faults.fail is not None:
        return Outcome(error_type=faults.fail)
    try:
        result = _result(operation, payload)
    except GenerationRefusedError as exc:
        return Outcome(error=str(exc), error_type=exc.error_type)
    if faults.bad_result:
        if operation is Operation.DECOMPOSE:
            return Outcome(result="1. do the thing 2. done")
        return Outcome(result={"success": True, "message": "agent built"})
    return Outcome(result=result)
