"""What the reference service accepts at most, and the cheap checks that refuse the rest.

Every check here runs before the work it guards and costs no more than a look at the sizes
(or, for the nesting depth, one pass over the raw text that never recurses). A refusal is
a :class:`LimitExceededError`, which the app answers ``400 {"detail", "errors"}`` naming
the limit. The defaults and why they are what they are: the package docstring.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "LimitExceededError", "Limits", "check", "json_depth"]


@dataclass(frozen=True, kw_only=True)
class Limits:
    """The sizes of one request the service accepts (see ``ReferenceSettings``)."""

    body_bytes: int = 2 * 1024 * 1024
    nodes: int = 500
    links: int = 2_000
    json_depth: int = 32
    text_chars: int = 20_000
    edits: int = 50


DEFAULT_LIMITS = Limits()

# (what it counts, the ReferenceSettings field that sets it) per Limits field.
_NAMES = {
    "body_bytes": ("bytes of body", "max_body_bytes"),
    "nodes": ("nodes", "max_nodes"),
    "links": ("links", "max_links"),
    "json_depth": ("levels of JSON nesting", "max_json_depth"),
    "text_chars": ("characters of text", "max_text_chars"),
    "edits": ("changes in one request", "max_edits"),
}


class LimitExceededError(Exception):
    """A request (or the agent an edit would make) is over one of the :class:`Limits`.

    ``limit`` names the :class:`Limits` field, ``found`` the size seen (None: more than
    the bound, not counted further), ``field`` the request field at fault (None when the
    caller knows it better). ``detail`` names the setting; ``message`` says what is over.
    """

    def __init__(
        self,
        *,
        limit: str,
        bound: int,
        found: int | None,
        field: str | None = None,
        message: str | None = None,
    ) -> None:
        what, setting = _NAMES[limit]
        self.limit = limit
        self.bound = bound
        self.found = found
        self.field = field
        if message is None:
            has = "more" if found is None else f"{found:,}"
            message = f"At most {bound:,} {what}; it has {has}."
        self.message = message
        self.detail = f"Over the limit {setting}: at most {bound:,} {what}."
        super().__init__(self.detail)

    def as_json(self) -> dict[str, object]:
        """The 400 body: ``{"detail", "errors": {field: message}}``."""
        return {"detail": self.detail, "errors": {self.field or "body": self.message}}


def check(*, limit: str, bound: int, found: int, field: str) -> None:
    """Raise :class:`LimitExceededError` when ``found`` is over ``bound``."""
    if found > bound:
        raise LimitExceededError(limit=limit, bound=bound, found=found, field=field)


# A JSON string (escapes included); outside strings only brackets nest.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deeply the JSON document ``text`` nests arrays and objects (``{}`` is 1).

    One pass of regular expressions and C-level iteration, no recursion, so a document
    nested a million deep costs what its length costs. For text that is not JSON the
    answer is only an estimate (the parser refuses such text anyway).
    """
    brackets = _BRACKETS.findall(_STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)
