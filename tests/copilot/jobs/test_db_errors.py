"""Which database errors are an outage: real errors from a real PostgreSQL (behind the outage
proxy, killed by an administrator, read-only) and a real SQLite file locked by a writer.

The PostgreSQL cases use a Django connection of their own (not the test database), so they run
in both passes wherever a PostgreSQL answers at TEST_POSTGRES_URL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, OperationalError, ProgrammingError
from django.db.utils import ConnectionHandler

from copilot.jobs.db_errors import is_outage, outage_reason
from tests.support.db_outage import DbOutageProxy
from tests.support.servers import needs_postgres_server, postgres_server_url

POSTGRES_URL = postgres_server_url()


def _django_postgres(*, port: int | None = None):
    """A Django connection (of its own handler) to the server of TEST_POSTGRES_URL, or to ``port``
    on 127.0.0.1 (the proxy)."""
    parts = urlsplit(POSTGRES_URL)
    handler = ConnectionHandler(
        {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": parts.path.lstrip("/") or "postgres",
                "USER": parts.username or "postgres",
                "PASSWORD": parts.password or "",
                "HOST": "127.0.0.1" if port else (parts.hostname or "127.0.0.1"),
                "PORT": str(port or parts.port or 5432),
                "OPTIONS": {"connect_timeout": 3},
            }
        }
    )
    return handler["default"]


@pytest.fixture(autouse=True)
def _own_connections(django_db_blocker) -> Iterator[None]:
    """These tests open connections of their own, never the test database's."""
    with django_db_blocker.unblock():
        yield


def _raised(fn) -> BaseException:
    with pytest.raises(DatabaseError) as info:
        fn()
    return info.value


@pytest.fixture
def proxied() -> Iterator[tuple[DbOutageProxy, object]]:
    with DbOutageProxy.for_url(POSTGRES_URL) as proxy:
        conn = _django_postgres(port=proxy.port)
        try:
            yield proxy, conn
        finally:
            conn.close()


def _query(conn, sql: str) -> None:
    with conn.cursor() as cursor:
        cursor.execute(sql)


@needs_postgres_server
def test_a_connection_dropped_by_the_outage_is_an_outage(proxied) -> None:
    proxy, conn = proxied
    _query(conn, "select 1")
    proxy.begin_outage()
    exc = _raised(lambda: _query(conn, "select 1"))
    assert isinstance(exc, OperationalError)
    assert outage_reason(exc) == "connection lost or refused"


@needs_postgres_server
def test_a_connection_refused_during_the_outage_is_an_outage(proxied) -> None:
    proxy, conn = proxied
    proxy.begin_outage()
    exc = _raised(lambda: _query(conn, "select 1"))
    assert isinstance(exc, OperationalError)
    assert outage_reason(exc) == "connection lost or refused"


@needs_postgres_server
def test_a_query_on_a_connection_closed_after_the_outage_is_an_outage(proxied) -> None:
    proxy, conn = proxied
    _query(conn, "select 1")
    proxy.begin_outage()
    _raised(lambda: _query(conn, "select 1"))
    # The same broken connection used again: psycopg says it is closed.
    exc = _raised(lambda: _query(conn, "select 1"))
    assert is_outage(exc)


@needs_postgres_server
def test_a_backend_terminated_by_an_administrator_is_an_outage() -> None:
    victim = _django_postgres()
    try:
        with victim.cursor() as cursor:
            cursor.execute("select pg_backend_pid()")
            pid = cursor.fetchone()[0]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s)", [pid])
        exc = _raised(lambda: _query(victim, "select 1"))
    finally:
        victim.close()
    assert is_outage(exc)
    # What a restart sends every backend: "terminating connection due to administrator command"
    assert isinstance(exc.__cause__, psycopg.errors.AdminShutdown)
    assert outage_reason(exc) == "server says 57P01"


@needs_postgres_server
def test_a_read_only_server_during_a_failover_is_an_outage() -> None:
    conn = _django_postgres()
    try:
        _query(conn, "set default_transaction_read_only = on")
        exc = _raised(lambda: _query(conn, "create temporary table outage_probe (x int)"))
    finally:
        conn.close()
    assert isinstance(exc.__cause__, psycopg.errors.ReadOnlySqlTransaction)
    assert outage_reason(exc) == "server says 25006"


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.CannotConnectNow("the database system is shutting down"),
        psycopg.errors.ConnectionFailure("connection failure"),
        psycopg.errors.TooManyConnections("sorry, too many clients already"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.InterfaceError("the connection is closed"),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:20],
)
def test_server_and_connection_errors_are_outages_wrapped_or_not(error) -> None:
    assert is_outage(error)
    wrapped = OperationalError(str(error))
    wrapped.__cause__ = error  # as django.db.utils.DatabaseErrorWrapper raises it
    assert is_outage(wrapped)


@needs_postgres_server
@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("select 1 / 0", DatabaseError),  # DataError (division by zero)
        ("select * from no_such_table_anywhere", ProgrammingError),
        ("select 'x'::int", DatabaseError),  # DataError (invalid input)
    ],
)
def test_errors_about_the_query_are_not_outages(sql, kind) -> None:
    conn = _django_postgres()
    try:
        exc = _raised(lambda: _query(conn, sql))
    finally:
        conn.close()
    assert isinstance(exc, kind)
    assert not is_outage(exc)


@needs_postgres_server
def test_a_constraint_is_not_an_outage() -> None:
    conn = _django_postgres()
    try:
        _query(conn, "create temporary table outage_unique (x int primary key)")
        _query(conn, "insert into outage_unique values (1)")
        exc = _raised(lambda: _query(conn, "insert into outage_unique values (1)"))
    finally:
        conn.close()
    assert isinstance(exc, IntegrityError)
    assert not is_outage(exc)


def _django_sqlite(path: Path, *, timeout: float):
    handler = ConnectionHandler(
        {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(path),
                "OPTIONS": {"timeout": timeout, "transaction_mode": "IMMEDIATE"},
            }
        }
    )
    return handler["default"]


def test_sqlite_locked_by_a_held_write_transaction_is_an_outage(tmp_path) -> None:
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("create table t (x int)")
    holder.execute("begin immediate")
    holder.execute("insert into t values (1)")
    conn = _django_sqlite(path, timeout=0.2)
    try:
        exc = _raised(lambda: _query(conn, "insert into t values (2)"))
        assert isinstance(exc, OperationalError)
        assert outage_reason(exc) == "database is locked"
        holder.execute("commit")
        _query(conn, "insert into t values (3)")  # the lock is gone: the same write passes
    finally:
        conn.close()
        holder.close()


def test_other_sqlite_errors_are_not_outages(tmp_path) -> None:
    conn = _django_sqlite(tmp_path / "plain.sqlite3", timeout=0.2)
    try:
        missing = _raised(lambda: _query(conn, "select * from no_such_table"))
        _query(conn, "create table u (x int primary key)")
        _query(conn, "insert into u values (1)")
        duplicate = _raised(lambda: _query(conn, "insert into u values (1)"))
    finally:
        conn.close()
    assert isinstance(missing, OperationalError) and not is_outage(missing)
    assert isinstance(duplicate, IntegrityError) and not is_outage(duplicate)


def test_errors_that_are_not_database_errors_are_not_outages() -> None:
    assert not is_outage(ValueError("database is locked"))
    assert not is_outage(RuntimeError("connection closed"))
