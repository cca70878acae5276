"""Riding out a database outage: one log line when it starts, one when it ends, and writes
retried with a capped backoff until the database answers or the lease is gone.

A PostgreSQL restart or failover, or SQLite's write lock held past its busy timeout
(:mod:`copilot.jobs.db_errors`), is not a job's failure. The runner's database threads close
the dead connection (:mod:`copilot.runner.database`), so each retry reconnects. A write that
failed with the connection may still have been committed (the server got it, its answer was
lost): before trying again, :func:`retrying` asks ``reconcile`` whether it is already stored,
so an event is never written twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from copilot.jobs.db_errors import is_outage, outage_reason

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The first wait after a failed write, doubled after each failure up to the cap.
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 2.0


class OutageLog:
    """Logs an outage once: WARNING when the first call fails, INFO with its duration when a
    call made after that failure succeeds. One per runner, so N jobs and the scans log two
    lines per outage, not one per attempt."""

    def __init__(self, *, who: str) -> None:
        self.who = who
        #: ``time.monotonic()`` of the failure that started the current outage, or None.
        self.down_since: float | None = None
        #: ``time.monotonic()`` when the last outage was seen to end, or None.
        self.back_since: float | None = None
        self.outages = 0
        #: Set when the database answers again: writes waiting out the outage retry at once
        #: (the heartbeat probes it once a second) rather than at their next backoff step.
        self.back = asyncio.Event()
        self.back.set()

    def failed(self, exc: BaseException, *, started_at: float | None = None) -> None:
        """A call that started at ``started_at`` (monotonic) met an outage. One that started
        before the last outage was seen to end is a late report of that outage (it waited
        out the pool's timeout, say, while others got through), not a new one."""
        if self.down_since is not None:
            return
        if started_at is not None and self.back_since is not None and started_at < self.back_since:
            return
        self.down_since = time.monotonic()
        self.outages += 1
        self.back = asyncio.Event()
        logger.warning(
            "database unavailable %s reason=%r error=%s: retrying until it is back",
            self.who,
            outage_reason(exc),
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        )

    def succeeded(self, *, started_at: float) -> None:
        """A call that started at ``started_at`` (monotonic) succeeded; one that started
        before the outage did not see it end."""
        down_since = self.down_since
        if down_since is None or started_at < down_since:
            return
        self.down_since = None
        self.back_since = time.monotonic()
        self.back.set()
        logger.info(
            "database back %s after=%.1fs", self.who, max(time.monotonic() - down_since, 0.0)
        )


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    *,
    give_up: Callable[[], None] | None = None,
    reconcile: Callable[[], Awaitable[T | None]] | None = None,
    interrupt: asyncio.Event | None = None,
    outage: OutageLog | None = None,
) -> T:
    """``await attempt()`` until it does not fail with an outage.

    - ``give_up()`` is called after each failure; it raises to stop retrying (the lease is
      gone, the job is being let go);
    - ``reconcile()``, called before each retry, returns the write's outcome when the failed
      attempt was stored after all, or None to try again;
    - ``interrupt`` set ends a wait early (so ``give_up`` is asked at once), and so does
      ``outage`` hearing that the database is back (another call succeeded).

    Errors that are not an outage propagate at once.
    """
    delay = FIRST_RETRY_SECONDS
    failed = False
    while True:
        try:
            if failed and reconcile is not None:
                stored = await reconcile()
                if stored is not None:
                    return stored
            return await attempt()
        except Exception as exc:
            if not is_outage(exc):
                raise
            failed = True
        if give_up is not None:
            give_up()
        wake = [interrupt] if interrupt is not None else []
        if outage is not None:
            wake.append(outage.back)
        await _wait(delay, wake)
        delay = min(delay * 2, MAX_RETRY_SECONDS)


async def _wait(seconds: float, events: list[asyncio.Event]) -> None:
    """Sleep ``seconds``, or less if one of ``events`` is (or gets) set."""
    if not events:
        await asyncio.sleep(seconds)
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
