"""Riding out an outage (copilot.runner.outage): retries across a real one (PostgreSQL behind
the outage proxy), one log line at each end of it, a reconcile before each retry, and a give-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.db import IntegrityError, OperationalError

from copilot.runner.outage import OutageLog, retrying
from tests.support.db_outage import DbOutageProxy
from tests.support.servers import needs_postgres_server, postgres_server_url

POSTGRES_URL = postgres_server_url()


class Database:
    """A one-connection database client that, like the runner's threads, reconnects after a
    connection error; its errors are wrapped the way Django wraps them."""

    def __init__(self, url: str, log: OutageLog) -> None:
        self.url = url
        self.log = log
        self.conn: psycopg.Connection | None = None
        self.calls = 0

    def _select(self, value: int) -> int:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
        row = self.conn.execute("select %s::int", [value]).fetchone()
        assert row is not None
        return row[0]

    async def select(self, value: int) -> int:
        self.calls += 1
        started = time.monotonic()
        try:
            result = await asyncio.to_thread(self._select, value)
        except psycopg.OperationalError as exc:
            if self.conn is not None:
                self.conn.close()
            wrapped = OperationalError(str(exc))
            self.log.failed(exc)
            raise wrapped from exc
        self.log.succeeded(started_at=started)
        return result


@pytest.fixture
def proxy() -> Iterator[DbOutageProxy]:
    with DbOutageProxy.for_url(POSTGRES_URL) as proxy:
        yield proxy


@needs_postgres_server
async def test_a_call_waits_out_an_outage_and_logs_it_once(proxy, caplog) -> None:
    caplog.set_level(logging.INFO, logger="copilot.runner.outage")
    log = OutageLog(who="owner=test")
    db = Database(proxy.url_for(POSTGRES_URL), log)
    assert await db.select(1) == 1
    proxy.outage(1.5, block=False)
    started = time.monotonic()
    assert await retrying(lambda: db.select(2)) == 2
    assert time.monotonic() - started >= 1.0
    assert db.calls > 3  # it really retried
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert lines[0][1].startswith("database unavailable owner=test reason='connection lost")
    assert lines[1][1].startswith("database back owner=test after=")
    assert log.outages == 1 and log.down_since is None


@needs_postgres_server
async def test_give_up_ends_the_wait(proxy) -> None:
    db = Database(proxy.url_for(POSTGRES_URL), OutageLog(who="test"))
    proxy.begin_outage()
    deadline = time.monotonic() + 0.5

    def give_up() -> None:
        if time.monotonic() > deadline:
            raise TimeoutError("lease gone")

    with pytest.raises(TimeoutError, match="lease gone"):
        await retrying(lambda: db.select(1), give_up=give_up)
    proxy.end_outage()


@needs_postgres_server
async def test_an_interrupt_cuts_the_wait_short(proxy) -> None:
    db = Database(proxy.url_for(POSTGRES_URL), OutageLog(who="test"))
    proxy.begin_outage()
    interrupt = asyncio.Event()

    def give_up() -> None:
        if interrupt.is_set():
            raise RuntimeError("let go")

    task = asyncio.create_task(retrying(lambda: db.select(1), give_up=give_up, interrupt=interrupt))
    await asyncio.sleep(3.0)  # the wait has reached its cap of 2 s
    interrupt.set()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="let go"):
        await task
    assert time.monotonic() - started < 0.5


@needs_postgres_server
async def test_reconcile_is_asked_before_each_retry_and_its_answer_wins(proxy) -> None:
    db = Database(proxy.url_for(POSTGRES_URL), OutageLog(who="test"))
    asked: list[int] = []

    async def reconcile() -> int | None:
        asked.append(db.calls)
        if len(asked) < 2:
            return None
        proxy.end_outage()  # back now: the next try would succeed, but this answer wins
        return 99

    proxy.begin_outage()
    try:
        assert await retrying(lambda: db.select(1), reconcile=reconcile) == 99
    finally:
        proxy.end_outage()
    assert asked == [1, 2]  # asked before each retry, the second after two failed tries


async def test_errors_that_are_not_an_outage_are_not_retried() -> None:
    calls = 0

    async def attempt() -> int:
        nonlocal calls
        calls += 1
        raise IntegrityError("duplicate key value violates unique constraint")

    with pytest.raises(IntegrityError):
        await retrying(attempt)
    assert calls == 1


def test_the_log_ignores_calls_that_started_before_the_outage(caplog) -> None:
    caplog.set_level(logging.INFO, logger="copilot.runner.outage")
    log = OutageLog(who="test")
    before = time.monotonic()
    log.failed(OperationalError("server closed the connection unexpectedly"))
    log.failed(OperationalError("server closed the connection unexpectedly"))
    log.succeeded(started_at=before)  # in flight when it broke: says nothing
    assert log.down_since is not None
    log.succeeded(started_at=time.monotonic())
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]


def test_the_log_takes_a_failure_of_a_call_made_during_the_outage_for_that_outage(caplog) -> None:
    """A call made while the database was away, failing only after others got through (it
    waited out the pool's timeout), is the same outage, not a second one."""
    caplog.set_level(logging.INFO, logger="copilot.runner.outage")
    log = OutageLog(who="test")
    log.failed(OperationalError("server closed the connection unexpectedly"))
    waiting = time.monotonic()  # waits for a pooled connection meanwhile
    log.succeeded(started_at=time.monotonic())  # the database is back
    log.failed(OperationalError("couldn't get a connection"), started_at=waiting)
    assert log.down_since is None and log.back.is_set() and log.outages == 1
    log.failed(OperationalError("server closed the connection unexpectedly"))  # a new one
    assert log.outages == 2
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING"]
