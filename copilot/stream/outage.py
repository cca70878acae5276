"""Streams through a database restart or failover: wait for the database, bounded, quietly.

An open stream needs the database only now and then (a replay page, a gap to fill; the
hub's checks once per heartbeat), and nothing it holds is lost while the database is away:
the log is there when it returns. So a read that meets an outage (:mod:`copilot.jobs.db_errors`)
is tried again every :data:`RETRY_SECONDS` for up to :data:`WAIT_SECONDS`
(:func:`read_through_outage`), and the hub's checks say so once per outage
(:class:`OutageNotice`), not once per stream or per heartbeat, and with no traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from copilot.jobs.db_errors import is_outage, outage_reason

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: While the database is away, a stream's read is tried again this often...
RETRY_SECONDS = 1.0
#: ...for this long; then the stream ends with ``reconnect`` (the client comes back later).
WAIT_SECONDS = 60.0


class DatabaseAway(Exception):
    """The database stayed away for :data:`WAIT_SECONDS` while a stream needed it."""


async def read_through_outage(
    read: Callable[[], Awaitable[T]],
    *,
    wanted: Callable[[], bool],
    retry_seconds: float = RETRY_SECONDS,
    wait_seconds: float = WAIT_SECONDS,
) -> T | None:
    """``await read()``, tried again every ``retry_seconds`` while the database is away and
    ``wanted()`` holds.

    None once no longer wanted (the stream closed meanwhile); :class:`DatabaseAway` after
    ``wait_seconds``; any other error as it is. (The two are parameters so that a test can
    make the wait short.)
    """
    loop = asyncio.get_running_loop()
    give_up_at: float | None = None
    while True:
        try:
            return await read()
        except Exception as exc:
            if not is_outage(exc):
                raise
            if give_up_at is None:
                give_up_at = loop.time() + wait_seconds
            if loop.time() >= give_up_at:
                raise DatabaseAway(outage_reason(exc)) from exc
        await asyncio.sleep(retry_seconds)
        if not wanted():
            return None


class OutageNotice:
    """One WARNING when the hub's checks meet an outage, one INFO when they work again."""

    def __init__(self, *, who: str) -> None:
        self.who = who
        self.away = False

    def failed(self, what: str, exc: Exception) -> None:
        if not is_outage(exc):
            logger.warning("%s %s failed", self.who, what, exc_info=exc)
            return
        if not self.away:
            self.away = True
            logger.warning(
                "%s: database unavailable reason=%s; streams kept, checks resume once it is back",
                self.who,
                outage_reason(exc),
            )

    def succeeded(self) -> None:
        if self.away:
            self.away = False
            logger.info("%s: database back", self.who)

    def forget(self) -> None:
        """Nothing to check any more (no streams): the next failure is a new outage."""
        self.away = False
