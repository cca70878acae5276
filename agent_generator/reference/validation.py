"""Check submit bodies; a bad one answers ``400 {"detail": ..., "errors": {field: message}}``.

The :class:`~.limits.Limits` are checked first, each before the work it guards: the nesting
depth on the raw text (the parser recurses), then the sizes of what was parsed (nodes,
links, text, changes asked for), before anything looks at the items themselves. Those
refusals raise :class:`~.limits.LimitExceededError`, answered the same way.
"""

from __future__ import annotations

import json
from typing import Any

from .edits import request_clauses
from .jobs import Operation
from .limits import LimitExceededError, Limits, check, json_depth

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


def _check_sizes(*, operation: Operation, payload: dict[str, Any], limits: Limits) -> None:
    """Refuse a payload over the limits, looking only at sizes (items are checked later)."""

    def check_text(chars: int, field: str) -> None:
        check(limit="text_chars", bound=limits.text_chars, found=chars, field=field)

    for name in _TEXT_FIELDS[operation]:
        if isinstance(text := payload.get(name), str):
            check_text(len(text), name)
    if operation in _AGENT_FIELDS:
        name = _AGENT_FIELDS[operation]
        if isinstance(agent := payload.get(name), dict):
            for key, bound in (("nodes", limits.nodes), ("links", limits.links)):
                if isinstance(items := agent.get(key), list):
                    check(limit=key, bound=bound, found=len(items), field=f"{name}.{key}")
        text_field = _TEXT_FIELDS[operation][0]
        if isinstance(request := payload.get(text_field), str):
            edits = len(request_clauses(request))
            check(limit="edits", bound=limits.edits, found=edits, field=text_field)
    instructions = payload.get("instructions")
    if operation is Operation.GENERATE and isinstance(instructions, dict):
        if isinstance(goal := instructions.get("goal"), str):
            check_text(len(goal), "instructions.goal")
        if isinstance(steps := instructions.get("steps"), list):
            field = "instructions.steps"
            check(limit="nodes", bound=limits.nodes, found=len(steps), field=field)
            descriptions = (step.get("description") for step in steps if isinstance(step, dict))
            check_text(sum(len(d) for d in descriptions if isinstance(d, str)), field)


def validate_submit(*, operation: Operation, body: bytes, limits: Limits) -> dict[str, Any]:
    """The decoded body of a submit for ``operation``; raises :class:`InvalidRequestError`,
    or :class:`~.limits.LimitExceededError` for a body over ``limits``."""
    try:
        # What json.loads(body) does, in two steps so the depth is known before parsing.
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError:
        raise InvalidRequestError(
            "The body is not valid JSON.", errors={"body": "Send a JSON object."}
        ) from None
    check(limit="json_depth", bound=limits.json_depth, found=json_depth(text), field="body")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidRequestError(
            "The body is not valid JSON.", errors={"body": "Send a JSON object."}
        ) from None
    except RecursionError:  # only with a max_json_depth above what the parser can nest
        raise LimitExceededError(
            limit="json_depth", bound=limits.json_depth, found=None, field="body"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidRequestError(
            "The body must be a JSON object.", errors={"body": "Not an object."}
        )
    _check_sizes(operation=operation, payload=payload, limits=limits)
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
