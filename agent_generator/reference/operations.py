"""Compute a job's outcome at submit time, from its validated payload and its faults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .agents import GenerationRefusedError, generate
from .decompose import decompose
from .edits import UnclearRequestError, apply_request, unclear_questions
from .faults import Faults
from .jobs import Operation
from .limits import LimitExceededError, Limits

__all__ = ["Outcome", "compute_outcome"]


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """Either ``result`` (shown on completion) or ``error``/``error_type`` (job fails)."""

    result: Any = None
    error: str | None = None
    error_type: str | None = None


def _result(operation: Operation, payload: dict[str, Any], limits: Limits) -> dict[str, Any]:
    match operation:
        case Operation.DECOMPOSE:
            return decompose(description=payload["description"])
        case Operation.GENERATE:
            return generate(instructions=payload["instructions"], limits=limits)
        case Operation.UPDATE | Operation.CUSTOMIZE:
            update = operation is Operation.UPDATE
            agent = payload["current_agent_json" if update else "template_agent_json"]
            field = "update_request" if update else "modification_request"
            try:
                changed = apply_request(
                    agent=agent, request=payload[field], new_identity=not update, limits=limits
                )
            except UnclearRequestError as exc:
                return unclear_questions(exc.clause)
            except LimitExceededError as exc:
                exc.field = field  # the change asked for is what goes over
                raise
            return {"agent_json": changed, "success": True}


def compute_outcome(
    *, operation: Operation, payload: dict[str, Any], faults: Faults, limits: Limits
) -> Outcome:
    """The job's outcome; ``fail`` and ``bad-result`` faults override the real one.

    Raises :class:`~.limits.LimitExceededError` when the agent it would make is over
    ``limits`` (the submit is then refused, and no job is made).
    """
    if faults.fail is not None:
        return Outcome(error_type=faults.fail)
    try:
        result = _result(operation, payload, limits)
    except GenerationRefusedError as exc:
        return Outcome(error=str(exc), error_type=exc.error_type)
    if faults.bad_result:
        if operation is Operation.DECOMPOSE:
            return Outcome(result="1. do the thing 2. done")
        return Outcome(result={"success": True, "message": "agent built"})
    return Outcome(result=result)
