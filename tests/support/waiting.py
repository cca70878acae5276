"""Waiting in a test for something another process does: poll a predicate until it holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class _HasOutput(Protocol):
    def output(self) -> str: ...


def wait_for(
    predicate: Callable[[], T | None],
    *,
    seconds: float,
    what: str,
    step: float = 0.05,
    process: _HasOutput | None = None,
) -> T:
    """``predicate()``'s first true value, asked every ``step`` s; after ``seconds`` an
    AssertionError naming ``what`` (with ``process``'s output, when given)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    detail = f"\n{process.output()}" if process is not None else ""
    raise AssertionError(f"timed out waiting for {what}{detail}")
