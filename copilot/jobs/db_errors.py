"""Which database errors mean "the database is away" rather than "this write is wrong".

A managed PostgreSQL restarts for upgrades and fails over to a replica: every connection is
dropped (``AdminShutdown``, "server closed the connection unexpectedly"), new ones are refused
or told the server is starting up or shutting down, and for a moment the old primary may
answer as a read-only replica. SQLite's version is a write lock held past the busy timeout
("database is locked"). None of these says anything about the job being written: the same
write succeeds once the database is back, so callers retry it (:mod:`copilot.runner.outage`)
or answer "try again later". Everything else (a constraint, bad data, a bug in a query) is
about the write itself and is not retried.

Django wraps the driver's exception (``django.db.OperationalError`` from
``psycopg.OperationalError``, with the original as ``__cause__``); both are looked at, so a
caller can pass either.
"""

from __future__ import annotations

import sqlite3

import psycopg
from django.db import InterfaceError as DjangoInterfaceError

__all__ = ["RETRY_AFTER_SECONDS", "UNAVAILABLE_DETAIL", "is_outage", "outage_reason"]

#: What an answer during an outage says (pages, the API, a new event stream), and its
#: ``Retry-After``: a restart or failover takes a few seconds.
UNAVAILABLE_DETAIL = "The database is unavailable; retry in a few seconds."
RETRY_AFTER_SECONDS = 5

#: SQLSTATEs the server sends while it goes away or is not the primary yet: admin shutdown,
#: crash shutdown, "the database system is starting up / shutting down" (cannot connect now),
#: idle session timeout, too many connections (a restart's reconnect storm) and "cannot
#: execute … in a read-only transaction" (a failover's old primary, now a replica).
OUTAGE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P05", "53300", "25006"})

#: SQLite's messages for a lock another connection holds past the busy timeout.
SQLITE_LOCKED = ("database is locked", "database table is locked")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (Django's wrapper first, the driver's error after it)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 5:
        seen.append(current)
        current = current.__cause__
    return seen


def outage_reason(exc: BaseException) -> str | None:
    """A short reason when ``exc`` means the database is away (an outage); None otherwise."""
    for error in _chain(exc):
        if isinstance(error, psycopg.Error):
            if isinstance(error, psycopg.InterfaceError):
                return "connection closed"
            sqlstate = error.sqlstate
            if sqlstate is None:
                # Raised by the client, not sent by a server: the connection broke or could
                # not be made (or no pooled connection came in time).
                if isinstance(error, psycopg.OperationalError):
                    return "connection lost or refused"
                return None
            if sqlstate.startswith("08") or sqlstate in OUTAGE_SQLSTATES:
                return f"server says {sqlstate}"
            return None
        if isinstance(error, sqlite3.OperationalError):
            message = str(error).lower()
            return "database is locked" if message.startswith(SQLITE_LOCKED) else None
        if isinstance(error, sqlite3.Error):
            return None
    if isinstance(exc, DjangoInterfaceError):
        return "connection closed"  # Django's own "connection already closed"
    return None


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is away and the same call succeeds later."""
    return outage_reason(exc) is not None
