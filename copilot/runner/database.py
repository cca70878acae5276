"""The runner's database threads: Django's ORM blocks, the runner's event loop must not.

Each thread keeps one database connection. Calls about one job always go to the same thread,
so a job's writes stay in order; on PostgreSQL a few threads share a busy runner's writes (one
thread serialized every event write of 2,000 jobs in ``bench/runner_load.py``), on SQLite one
thread is the one writer the database takes anyway.

They are plain threads, not a ``ThreadPoolExecutor``: at interpreter exit
``concurrent.futures`` refuses new work to every pool before ``atexit`` handlers run, and the
in-process runner's last call, made from such a handler, releases its leases (see
:mod:`copilot.runner.thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection

from copilot.jobs.db_errors import is_outage
from copilot.runner.outage import OutageLog

T = TypeVar("T")

#: A call for a thread: where to answer, and what to run (None: close and end the thread).
_Call = tuple[asyncio.AbstractEventLoop, asyncio.Future, Callable[[], Any] | None]


def thread_count() -> int:
    """PostgreSQL takes a runner's writes from several threads at once; SQLite, one writer."""
    return 4 if settings.DATABASES["default"]["ENGINE"].endswith("postgresql") else 1


class DatabaseThreads:
    """``await threads.call(key, fn, ...)`` runs ``fn`` on the thread ``key`` maps to."""

    def __init__(self, *, who: str, count: int | None = None, name: str = "runner-db") -> None:
        #: Every call's outcome feeds it: one log line when the database goes, one when it is
        #: back (copilot.runner.outage); ``who`` names the runner in those lines.
        self.outage = OutageLog(who=who)
        self._queues: list[queue.SimpleQueue[_Call]] = []
        for n in range(count or thread_count()):
            calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
            threading.Thread(
                target=_serve, args=(calls, self.outage), name=f"{name}-{n}", daemon=True
            ).start()
            self._queues.append(calls)

    def __len__(self) -> int:
        return len(self._queues)

    async def call(
        self, key: uuid.UUID | None, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on the thread of job ``key`` (the first for None).

        An outage error (:mod:`copilot.jobs.db_errors`) propagates like any other, after the
        outage log has heard of it; the caller decides whether to retry."""
        shard = key.int % len(self._queues) if key is not None else 0
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        started_at = time.monotonic()
        self._queues[shard].put((loop, future, functools.partial(_guarded, fn, *args, **kwargs)))
        try:
            result = await future
        except DatabaseError as exc:
            if is_outage(exc):
                self.outage.failed(exc, started_at=started_at)
            raise
        self.outage.succeeded(started_at=started_at)
        return result

    async def aclose(self) -> None:
        """Close each thread's connection and end the threads, after the calls queued."""
        loop = asyncio.get_running_loop()
        closed = [loop.create_future() for _ in self._queues]
        for calls, future in zip(self._queues, closed, strict=True):
            calls.put((loop, future, None))
        await asyncio.gather(*closed)


def _serve(calls: queue.SimpleQueue[_Call], outage: OutageLog) -> None:
    seen_outages = 0
    while True:
        loop, future, fn = calls.get()
        if seen_outages != outage.outages:
            # An outage began since this thread's connection was opened: it is dead too, even
            # if no call of this thread met the outage. Reconnect now rather than fail once
            # more after the database is back.
            seen_outages = outage.outages
            if connection.vendor != "sqlite":
                with contextlib.suppress(DatabaseError):
                    connection.close()
        outcome: tuple[Any, BaseException | None] = (None, None)
        if fn is None:
            with contextlib.suppress(DatabaseError):  # the database may be away right now
                connection.close()
        else:
            try:
                outcome = (fn(), None)
            except BaseException as exc:  # handed to the awaiting coroutine
                outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody awaits it
            loop.call_soon_threadsafe(_settle, future, *outcome)
        if fn is None:
            return


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _guarded(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """A broken connection is dropped after an error, so the thread's next call reconnects.

    After an outage error it is dropped without asking (asking would be one more wait on a
    dead socket); SQLite's connection is kept, its lock error leaves it usable."""
    try:
        return fn(*args, **kwargs)
    except DatabaseError as exc:
        if connection.vendor != "sqlite" and is_outage(exc):
            with contextlib.suppress(Exception):
                connection.close()
        elif connection.connection is not None and not connection.is_usable():
            connection.close()
        raise
