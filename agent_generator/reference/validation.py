"""Check submit bodies; a bad one answers ``400 {"detail": ..., "errors": {field: message}}``."""

from __future__ import annotations

import json
from typing import Any

from .jobs import Operation

__all__ = ["InvalidRequestError", "validate_submit"]


class InvalidRequestError(Exception):
    """The submit body is unusable; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, detail: str, *, errors: dict[str, str]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors

    def as_json(self) -> dict[str, Any]:
        return {"detail": self.detail, "errors": self.errors}


_TEXT_FIELDS = {
    Operation.DECOMPOSE: ("description",),
    Operation.GENERATE: (),
    Operation.UPDATE: ("update_request",),
    Operation.CUSTOMIZE: ("modification_request",),
}
_AGENT_FIELDS = {
    Operation.UPDATE: "current_agent_json",
    Operation.CUSTOMIZE: "template_agent_json",
}


def _text_error(value: object) -> str | None:
    if value is None:
        return "This field is required."
    if not isinstance(value, str):
        return "Must be a string."
    if not value.strip():
        return "Must not be empty."
    return None


def _agent_errors(name: str, agent: object) -> dict[str, str]:
    if agent is None:
        return {name: "This field is required."}
    if not isinstance(agent, dict):
        return {name: "Must be an AgentJSON object."}
    errors: dict[str, str] = {}
    for key in ("nodes", "links"):
        items = agent.get(key, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            errors[f"{name}.{key}"] = "Must be a list of objects."
    nodes = agent.get("nodes", [])
    if isinstance(nodes, list) and any(
        isinstance(node, dict) and not isinstance(node.get("id"), str) for node in nodes
    ):
        errors[f"{name}.nodes"] = "Every node needs a string id."
    return errors


def _instructions_errors(instructions: object) -> dict[str, str]:
    if instructions is None:
        return {"instructions": "This field is required."}
    if not isinstance(instructions, dict):
        return {"instructions": "Must be an object with 'steps' or 'goal'."}
    steps = instructions.get("steps")
    if steps is None:
        if _text_error(instructions.get("goal")) is None:
            return {}
        return {"instructions": "Needs 'steps' (a non-empty list) or 'goal' (text)."}
    if not isinstance(steps, list) or not steps:
        return {"instructions.steps": "Must be a non-empty list of steps."}
    errors: dict[str, str] = {}
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            errors[f"instructions.steps[{index}]"] = "Must be an object."
        elif (problem := _text_error(step.get("description"))) is not None:
            errors[f"instructions.steps[{index}].description"] = problem
    return errors


def validate_submit(*, operation: Operation, body: bytes) -> dict[str, Any]:
    """The decoded body of a submit for ``operation``; raises :class:`InvalidRequestError`."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequestError(
            "The body is not valid JSON.", errors={"body": "Send a JSON object."}
        ) from None
    if not isinstance(payload, dict):
        raise InvalidRequestError(
            "The body must be a JSON object.", errors={"body": "Not an object."}
        )
    errors: dict[str, str] = {}
    for name in _TEXT_FIELDS[operation]:
        if (problem := _text_error(payload.get(name))) is not None:
            errors[name] = problem
    if operation in _AGENT_FIELDS:
        name = _AGENT_FIELDS[operation]
        errors.update(_agent_errors(name, payload.get(name)))
    if operation is Operation.GENERATE:
        errors.update(_instructions_errors(payload.get("instructions")))
    library = payload.get("library_agents")
    if library is not None and not (
        isinstance(library, list) and all(isinstance(item, dict) for item in library)
    ):
        errors["library_agents"] = "Must be a list of objects."
    if errors:
        raise InvalidRequestError("The request has invalid fields.", errors=errors)
    return payload
