"""Waiting out a database outage in a stream (copilot.stream.outage), with real driver errors:
a refused PostgreSQL connection (nothing listens on port 9) and SQLite's "locked"."""

from __future__ import annotations

import logging
import sqlite3

import psycopg
import pytest
from django.db import OperationalError

from copilot.stream import outage


def _refused() -> OperationalError:
    """What Django raises when the database refuses connections: its wrapper of psycopg's."""
    try:
        psycopg.connect("postgres://u@127.0.0.1:9/x", connect_timeout=2)
    except psycopg.OperationalError as exc:
        wrapped = OperationalError(str(exc))
        wrapped.__cause__ = exc
        return wrapped
    raise AssertionError("something listens on port 9")


def _not_an_outage() -> OperationalError:
    wrapped = OperationalError("no such table: nowhere")
    wrapped.__cause__ = sqlite3.OperationalError("no such table: nowhere")
    return wrapped


#: Short waits: tried again every 10 ms, for 0.2 s.
QUICK = {"retry_seconds": 0.01, "wait_seconds": 0.2}


def _failing(errors: list[Exception], result: str = "page"):
    calls = []

    async def read() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return read, calls


async def test_a_read_is_tried_again_until_the_database_answers():
    read, calls = _failing([_refused(), _refused()])
    assert await outage.read_through_outage(read, wanted=lambda: True, **QUICK) == "page"
    assert len(calls) == 3


async def test_a_database_away_too_long_ends_the_wait():
    read, calls = _failing([_refused()] * 1000)
    with pytest.raises(outage.DatabaseAway):
        await outage.read_through_outage(read, wanted=lambda: True, **QUICK)
    assert 2 < len(calls) < 1000


async def test_other_errors_are_not_waited_on():
    read, calls = _failing([_not_an_outage()])
    with pytest.raises(OperationalError, match="no such table"):
        await outage.read_through_outage(read, wanted=lambda: True, **QUICK)
    assert len(calls) == 1


async def test_a_stream_that_closed_meanwhile_stops_waiting():
    read, calls = _failing([_refused()] * 1000)
    assert await outage.read_through_outage(read, wanted=lambda: False, **QUICK) is None
    assert len(calls) == 1


def test_the_notice_says_it_once_per_outage_without_a_traceback(caplog):
    caplog.set_level(logging.INFO, logger="copilot.stream.outage")
    notice = outage.OutageNotice(who="stream hub")
    for _ in range(3):
        notice.failed("login check", _refused())
    notice.succeeded()
    notice.succeeded()
    notice.failed("lag check", _refused())
    notice.forget()
    notice.failed("lag check", _refused())
    lines = [(r.levelname, r.getMessage().split(" reason=")[0], r.exc_info) for r in caplog.records]
    assert lines == [
        ("WARNING", "stream hub: database unavailable", None),
        ("INFO", "stream hub: database back", None),
        ("WARNING", "stream hub: database unavailable", None),
        ("WARNING", "stream hub: database unavailable", None),
    ]
    caplog.clear()
    notice.failed("login check", _not_an_outage())  # a bug: said every time, with its traceback
    (record,) = caplog.records
    assert record.exc_info is not None and isinstance(record.exc_info[1], OperationalError)
