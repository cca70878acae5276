"""What a job request of each kind must contain, checked before anything is stored.

The same rules serve the web forms, the JSON API and the management commands: each passes a
kind and a payload (the protocol's fields for that kind) to :func:`job_request_clean`, which
returns the payload to submit or raises :class:`~copilot.jobs.exceptions.InvalidJobRequest` with one
message per bad field.

JSON from outside (an API body, a pasted or uploaded agent, an ``--agent-json`` file) may nest
at most :data:`MAX_JSON_DEPTH` arrays and objects: callers check the text with
:func:`json_too_deep` before ``json.loads`` (which recurses, and raises RecursionError near
1,000 levels), and :func:`job_request_clean` checks every field's value again, without
recursion, with what the database and the runner cannot store or send: NUL characters,
unpaired surrogates, NaN and infinities.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

from copilot.jobs.exceptions import InvalidJobRequest
from copilot.jobs.models import GenerationJob

MAX_TEXT_CHARS = 10_000
#: The deepest nesting of arrays and objects accepted in a JSON document or a field's value.
MAX_JSON_DEPTH = 64
JSON_TOO_DEEP = (
    f"JSON may nest arrays and objects at most {MAX_JSON_DEPTH} levels deep "
    f"(MAX_JSON_DEPTH); this is deeper."
)
Kind = GenerationJob.Kind

#: For each kind: its text field, and its agent-JSON field if it has one.
TEXT_FIELD = {
    Kind.DECOMPOSE: "description",
    Kind.GENERATE: "instructions",
    Kind.UPDATE: "update_request",
    Kind.CUSTOMIZE: "modification_request",
}
AGENT_FIELD = {Kind.UPDATE: "current_agent_json", Kind.CUSTOMIZE: "template_agent_json"}

#: A JSON string (closed or not: the scan does not judge validity).
_JSON_STRING = re.compile(r'"(?:[^"\\]+|\\.)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
#: What PostgreSQL's jsonb (and a UTF-8 encoder) refuses in a string: NUL, lone surrogates.
_UNSTORABLE_CHARS = re.compile(r"[\x00\ud800-\udfff]")


def json_too_deep(raw: str | bytes, *, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests arrays and objects deeper than ``limit``.

    A scan of the brackets outside strings, without recursion, so it is safe on any input;
    text that is not JSON is left for ``json.loads`` to refuse (bytes it cannot decode: False).
    """
    if isinstance(raw, bytes | bytearray):
        try:
            raw = bytes(raw).decode(json.detect_encoding(raw), "surrogatepass")
        except UnicodeDecodeError:
            return False
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", raw))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit


def _value_problem(value: Any) -> str | None:
    """Why a parsed JSON value cannot be stored and sent, or None; walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth + 1 > MAX_JSON_DEPTH:
                return JSON_TOO_DEEP
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if isinstance(item, dict):
                stack.extend((key, depth + 1) for key in item)
        elif isinstance(item, str):
            if _UNSTORABLE_CHARS.search(item):
                return "Text must not contain NUL characters or unpaired surrogates."
        elif isinstance(item, float) and not math.isfinite(item):
            return "Numbers must be finite (no NaN or Infinity)."
    return None


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
    for field, value in cleaned.items():
        if field not in errors and (problem := _value_problem(value)):
            errors[field] = problem
    if errors:
        raise InvalidJobRequest(errors)
    return cleaned
