"""Settings of the reference service (all durations in seconds, sizes as counts)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from .faults import parse_faults
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["ReferenceSettings"]


@dataclass(frozen=True, kw_only=True)
class ReferenceSettings:
    """How the reference service behaves; see the package docstring for ``faults`` and the
    ``max_*`` limits."""

    job_seconds: float = 60.0
    """How long a job runs (queued, then its phases, then completed)."""
    ttl_seconds: float = 3600.0
    """How long a job is kept after it ends; later polls answer 404."""
    max_wait_seconds: float = 25.0
    """The cap for a ``?wait=N`` long-poll."""
    long_poll: bool = True
    """False: ignore ``?wait`` like a service without the extension."""
    faults: str = ""
    """The fault spec applied to every job (a submit's header adds to it)."""
    max_fault_seconds: float = 3600.0
    """The largest number of seconds an ``X-Reference-Fault`` header may ask for."""
    max_body_bytes: int = DEFAULT_LIMITS.body_bytes
    """The largest request body read; reading stops past it."""
    max_nodes: int = DEFAULT_LIMITS.nodes
    """The most nodes of an agent read, written, or asked for as steps."""
    max_links: int = DEFAULT_LIMITS.links
    """The most links of an agent read or written."""
    max_json_depth: int = DEFAULT_LIMITS.json_depth
    """How deeply a request body may nest arrays and objects."""
    max_text_chars: int = DEFAULT_LIMITS.text_chars
    """The longest request text (description, goal, change request, all steps together)."""
    max_edits: int = DEFAULT_LIMITS.edits
    """The most changes one update or template-modification request may ask for."""
    store_path: Path | str | None = None
    """None: jobs live in memory; a path: also in that SQLite file, so they survive a
    restart (see ``store.py``)."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name.endswith("_seconds") and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{item.name} must be a number of seconds >= 0, not {value!r}")
            if item.type == "int" and not (
                isinstance(value, int) and not isinstance(value, bool) and value >= 1
            ):
                raise ValueError(f"{item.name} must be a whole number >= 1, not {value!r}")
        parse_faults(self.faults)  # raises FaultSpecError (a ValueError) for a bad spec

    @property
    def limits(self) -> Limits:
        """The ``max_*`` sizes as the checks take them."""
        return Limits(
            body_bytes=self.max_body_bytes,
            nodes=self.max_nodes,
            links=self.max_links,
            json_depth=self.max_json_depth,
            text_chars=self.max_text_chars,
            edits=self.max_edits,
        )
