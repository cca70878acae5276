"""What a job request of each kind must contain, checked before anything is stored.

The same rules serve the web forms, the JSON API and the management commands: each passes a
kind and a payload (the protocol's fields for that kind) to :func:`job_request_clean`, which
returns the payload to submit or raises :class:`~copilot.jobs.exceptions.InvalidJobRequest` with one
message per bad field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from copilot.jobs.exceptions import InvalidJobRequest
from copilot.jobs.models import GenerationJob

MAX_TEXT_CHARS = 10_000
Kind = GenerationJob.Kind

#: For each kind: its text field, and its agent-JSON field if it has one.
TEXT_FIELD = {
    Kind.DECOMPOSE: "description",
    Kind.GENERATE: "instructions",
    Kind.UPDATE: "update_request",
    Kind.CUSTOMIZE: "modification_request",
}
AGENT_FIELD = {Kind.UPDATE: "current_agent_json", Kind.CUSTOMIZE: "template_agent_json"}


def _text(payload: Mapping[str, Any], field: str, errors: dict[str, str]) -> str | None:
    value = payload.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        errors[field] = "This field is required."
        return None
    if not isinstance(value, str):
        errors[field] = "Must be text."
        return None
    if len(value) > MAX_TEXT_CHARS:
        errors[field] = f"Must be at most {MAX_TEXT_CHARS:,} characters (it has {len(value):,})."
        return None
    return value.strip()


def _agent_json(payload: Mapping[str, Any], field: str, errors: dict[str, str]) -> dict | None:
    value = payload.get(field)
    if value is None:
        errors[field] = "This field is required."
        return None
    if not isinstance(value, dict):
        errors[field] = f"Must be a JSON object (an agent), not {type(value).__name__}."
        return None
    for key in ("nodes", "links"):
        if not isinstance(value.get(key, []), list):
            errors[field] = f"The agent's '{key}' must be a list."
            return None
    return value


def job_request_clean(*, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Return the protocol payload for ``kind``, or raise InvalidJobRequest naming each field."""
    if kind not in Kind.values:
        raise InvalidJobRequest({"kind": f"Unknown kind {kind!r}; use one of {', '.join(Kind)}."})
    if not isinstance(payload, Mapping):
        raise InvalidJobRequest({"payload": "Must be a JSON object."})
    errors: dict[str, str] = {}
    kind = Kind(kind)
    text_field = TEXT_FIELD[kind]
    cleaned: dict[str, Any] = {}
    if kind == Kind.GENERATE and isinstance(payload.get(text_field), dict):
        instructions = payload[text_field]
        if not instructions:
            errors[text_field] = "This field is required."
        cleaned[text_field] = instructions
    else:
        text = _text(payload, text_field, errors)
        # The protocol's generate takes an object: plain instructions become {"goal": text}.
        cleaned[text_field] = {"goal": text} if kind == Kind.GENERATE else text
    if kind in AGENT_FIELD:
        cleaned[AGENT_FIELD[kind]] = _agent_json(payload, AGENT_FIELD[kind], errors)
    library_agents = payload.get("library_agents")
    if library_agents is not None:
        if not isinstance(library_agents, list) or not all(
            isinstance(a, dict) for a in library_agents
        ):
            errors["library_agents"] = "Must be a list of objects."
        else:
            cleaned["library_agents"] = library_agents
    if errors:
        raise InvalidJobRequest(errors)
    return cleaned
