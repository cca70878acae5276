"""Settings of the reference service (all durations in seconds)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from .faults import parse_faults

__all__ = ["ReferenceSettings"]


@dataclass(frozen=True, kw_only=True)
class ReferenceSettings:
    """How the reference service behaves; see the package docstring for ``faults``."""

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

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name.endswith("_seconds") and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{item.name} must be a number of seconds >= 0, not {value!r}")
        parse_faults(self.faults)  # raises FaultSpecError (a ValueError) for a bad spec
