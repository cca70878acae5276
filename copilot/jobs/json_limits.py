"""What JSON from outside may hold: how deep it nests, and values a database can store.

A request may nest arrays and objects at most :data:`MAX_JSON_DEPTH` levels, the reference
Agent Generator's own limit, so a job the portal accepts is not refused upstream minutes later:
a field's value (an agent, instructions) at most :data:`MAX_VALUE_DEPTH`. That rule is the
job-request schemas' (:mod:`copilot.jobs.job_requests`), checked by :func:`value_problem`
without recursion, with what PostgreSQL's ``jsonb`` and the runner cannot store or send: NUL
characters, unpaired surrogates, NaN and infinities.

Text deeper than :data:`MAX_PARSE_DEPTH` is not parsed at all: ``json.loads`` recurses (and
raises RecursionError near 1,000 levels), so every door checks the text first with
:func:`json_too_deep`. That guard sits well above the rule, so that within it every door (API,
form, command) answers the same field error for the same payload.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

#: The deepest nesting of arrays and objects a job request may hold.
MAX_JSON_DEPTH = 32
#: The deepest nesting of one field's value (the request is one level around it).
MAX_VALUE_DEPTH = MAX_JSON_DEPTH - 1
#: JSON text nested deeper than this is refused before it is parsed.
MAX_PARSE_DEPTH = 100
JSON_TOO_DEEP = (
    f"JSON nested deeper than {MAX_PARSE_DEPTH} levels is not read; a job request may nest "
    f"arrays and objects at most {MAX_JSON_DEPTH} levels deep (MAX_JSON_DEPTH)."
)
VALUE_TOO_DEEP = (
    f"A field's value may nest arrays and objects at most {MAX_VALUE_DEPTH} levels deep "
    f"(MAX_JSON_DEPTH {MAX_JSON_DEPTH}, less the request around it); this is deeper."
)
UNSTORABLE_TEXT = "Text must not contain NUL characters or unpaired surrogates."
NOT_FINITE = "Numbers must be finite (no NaN or Infinity)."

#: A JSON string (closed or not: the scan does not judge validity).
_JSON_STRING = re.compile(r'"(?:[^"\\]+|\\.)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
#: What PostgreSQL's jsonb (and a UTF-8 encoder) refuses in a string: NUL, lone surrogates.
_UNSTORABLE_CHARS = re.compile(r"[\x00\ud800-\udfff]")


def json_too_deep(raw: str | bytes, *, limit: int = MAX_PARSE_DEPTH) -> bool:
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


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored in a ``jsonb`` value, or None."""
    return UNSTORABLE_TEXT if _UNSTORABLE_CHARS.search(text) else None


def value_problem(value: Any, *, limit: int = MAX_VALUE_DEPTH) -> str | None:
    """Why a parsed JSON value cannot be stored and sent, or None; walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth + 1 > limit:
                return VALUE_TOO_DEEP
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if isinstance(item, dict):
                stack.extend((key, depth + 1) for key in item)
        elif isinstance(item, str):
            if problem := text_problem(item):
                return problem
        elif isinstance(item, float) and not math.isfinite(item):
            return NOT_FINITE
    return None
