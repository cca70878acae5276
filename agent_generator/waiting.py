"""Waiting that the caller can interrupt: a deadline plus the ``cancel`` and ``detach`` events.

``run()`` never blocks on a plain ``asyncio.sleep`` or a bare request: every wait and
every request goes through a ``Waiter`` so that setting either event wakes it at once
(an in-flight long-poll is aborted), and no wait outlives the budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Literal, TypeVar

__all__ = ["StopRequested", "Waiter"]

T = TypeVar("T")
StopReason = Literal["cancel", "detach"]


class StopRequested(Exception):
    """Raised inside ``run()`` when the ``cancel`` or ``detach`` event is set."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason)
        self.reason: StopReason = reason


class Waiter:
    """Interruptible waits until ``deadline`` (a ``time.monotonic()`` value)."""

    def __init__(
        self,
        *,
        deadline: float,
        cancel: asyncio.Event | None = None,
        detach: asyncio.Event | None = None,
    ) -> None:
        self.deadline = deadline
        self._cancel = cancel
        self._detach = detach

    def remaining(self) -> float:
        """Seconds left until the deadline (negative once it has passed)."""
        return self.deadline - time.monotonic()

    def check(self) -> None:
        """Raise ``StopRequested`` if an event is set; ``cancel`` wins over ``detach``."""
        if self._cancel is not None and self._cancel.is_set():
            raise StopRequested("cancel")
        if self._detach is not None and self._detach.is_set():
            raise StopRequested("detach")

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (at most until the deadline), or less if an event is set."""
        self.check()
        seconds = min(seconds, max(self.remaining(), 0.0))
        if seconds > 0:
            await self.race(asyncio.sleep(seconds))

    async def race(self, awaitable: Awaitable[T], *, stop_on_cancel: bool = True) -> T:
        """Await ``awaitable`` unless an event is set first; then abort it and raise.

        With ``stop_on_cancel=False`` only ``detach`` interrupts (used for a submit, whose
        answer is needed to delete the job it created).
        """
        events: list[tuple[StopReason, asyncio.Event]] = []
        if stop_on_cancel and self._cancel is not None:
            events.append(("cancel", self._cancel))
        if self._detach is not None:
            events.append(("detach", self._detach))
        if not events:
            return await awaitable
        work = asyncio.ensure_future(awaitable)
        watchers = [asyncio.ensure_future(event.wait()) for _, event in events]
        try:
            await asyncio.wait([work, *watchers], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for watcher in watchers:
                watcher.cancel()
            if not work.done():
                work.cancel()
                await asyncio.wait([work])
        if work.done() and not work.cancelled():
            return work.result()
        for reason, event in events:
            if event.is_set():
                raise StopRequested(reason)
        raise asyncio.CancelledError  # pragma: no cover - the work was cancelled by someone else
