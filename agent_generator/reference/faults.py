"""Parse fault specs: ``"duration=2,poll-503=2,retry-after=0.1"`` into :class:`Faults`.

The grammar and what each fault does are documented in the package docstring
(``agent_generator/reference/__init__.py``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FAULT_NAMES", "FaultSpecError", "Faults", "check_seconds", "parse_faults"]


class FaultSpecError(ValueError):
    """A fault spec names an unknown fault or gives a bad value."""


@dataclass(frozen=True, kw_only=True)
class Faults:
    """The faults applied to one job (all off by default)."""

    duration: float | None = None
    slow_poll: float = 0.0
    slow_submit: float = 0.0
    submit_503: int = 0
    submit_429: int = 0
    poll_503: int = 0
    poll_429: int = 0
    poll_504: int = 0
    retry_after: float | None = None
    malformed: bool = False
    unknown_status: bool = False
    bad_result: bool = False
    fail: str | None = None
    expire: bool = False
    reset: bool = False
    bad_job_id: bool = False


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be a number of seconds >= 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be a count >= 0")
    return value


def _error_type(text: str) -> str:
    if not text.replace("_", "").replace("-", "").isalnum():
        raise ValueError("must be a word such as llm_timeout")
    return text


# name -> (Faults field, value parser or None for a flag)
FAULT_NAMES: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "duration": ("duration", _seconds),
    "slow-poll": ("slow_poll", _seconds),
    "slow-submit": ("slow_submit", _seconds),
    "submit-503": ("submit_503", _count),
    "submit-429": ("submit_429", _count),
    "poll-503": ("poll_503", _count),
    "poll-429": ("poll_429", _count),
    "poll-504": ("poll_504", _count),
    "retry-after": ("retry_after", _seconds),
    "malformed": ("malformed", None),
    "unknown-status": ("unknown_status", None),
    "bad-result": ("bad_result", None),
    "fail": ("fail", _error_type),
    "expire": ("expire", None),
    "reset": ("reset", None),
    "bad-job-id": ("bad_job_id", None),
}


def parse_faults(spec: str, *, base: Faults | None = None) -> Faults:
    """``base`` (default: no faults) with the faults of ``spec`` applied on top.

    Raises :class:`FaultSpecError` naming the first bad item.
    """
    changes: dict[str, Any] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, raw = (piece.strip() for piece in item.partition("="))
        if name not in FAULT_NAMES:
            known = ", ".join(sorted(FAULT_NAMES))
            raise FaultSpecError(f"unknown fault {name!r} (known: {known})")
        field, parse = FAULT_NAMES[name]
        if parse is None:
            if sep:
                raise FaultSpecError(f"fault {name!r} takes no value")
            changes[field] = True
            continue
        if not sep or not raw:
            raise FaultSpecError(f"fault {name!r} needs a value: {name}=VALUE")
        try:
            changes[field] = parse(raw)
        except ValueError as exc:
            raise FaultSpecError(f"fault {name!r}: {raw!r} {exc}") from exc
    return dataclasses.replace(base or Faults(), **changes)


def check_seconds(faults: Faults, *, limit: float) -> None:
    """Raise :class:`FaultSpecError` naming the first fault that asks for more than
    ``limit`` seconds (a job kept that long, or a request held that long)."""
    for name, (field, parse) in FAULT_NAMES.items():
        value = getattr(faults, field)
        if parse is _seconds and value is not None and value > limit:
            raise FaultSpecError(
                f"fault {name!r}: at most {limit:g} seconds (max_fault_seconds), not {value:g}"
            )
