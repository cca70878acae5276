"""The outage proxy (tests/support/db_outage.py) against a real PostgreSQL server.

Plain psycopg connections (not Django's), so these run in either pass as long as a
PostgreSQL answers at TEST_POSTGRES_URL (default: the local server).
"""

from __future__ import annotations

import socket
import time

import psycopg
import pytest

from tests.support.db_outage import DbOutageProxy
from tests.support.servers import needs_postgres_server, postgres_server_url

POSTGRES_URL = postgres_server_url()

pytestmark = needs_postgres_server


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, connect_timeout=3, autocommit=True)


def test_url_for_keeps_user_password_database_and_query() -> None:
    with DbOutageProxy() as proxy:
        url = proxy.url_for("postgres://bob:s3cret@db.example:6543/portal?sslmode=disable")
        assert url == f"postgres://bob:s3cret@127.0.0.1:{proxy.port}/portal?sslmode=disable"
        assert proxy.url_for("postgres:///portal") == f"postgres://127.0.0.1:{proxy.port}/portal"


def test_for_url_targets_the_named_server() -> None:
    proxy = DbOutageProxy.for_url("postgres://u@10.1.2.3:6000/x")
    assert (proxy.target_host, proxy.target_port) == ("10.1.2.3", 6000)


def test_relays_queries() -> None:
    with DbOutageProxy.for_url(POSTGRES_URL) as proxy, _connect(proxy.url_for(POSTGRES_URL)) as c:
        assert c.execute("select 41 + 1").fetchone() == (42,)
        assert proxy.open_connections == 1


def test_drop_all_breaks_open_connections_but_new_ones_pass() -> None:
    with DbOutageProxy.for_url(POSTGRES_URL) as proxy:
        url = proxy.url_for(POSTGRES_URL)
        conn = _connect(url)
        assert proxy.drop_all() == 1
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
        conn.close()
        with _connect(url) as again:
            assert again.execute("select 1").fetchone() == (1,)


def test_outage_refuses_new_connections_until_it_ends() -> None:
    with DbOutageProxy.for_url(POSTGRES_URL) as proxy:
        url = proxy.url_for(POSTGRES_URL)
        conn = _connect(url)
        proxy.begin_outage()
        assert proxy.is_down and proxy.dropped == 1
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
        with pytest.raises(psycopg.OperationalError):
            _connect(url)
        assert proxy.refused >= 1
        proxy.end_outage()
        with _connect(url) as again:
            assert again.execute("select 1").fetchone() == (1,)


def test_timed_outage_in_the_background_ends_by_itself() -> None:
    with DbOutageProxy.for_url(POSTGRES_URL) as proxy:
        url = proxy.url_for(POSTGRES_URL)
        started = time.monotonic()
        proxy.outage(0.6, block=False)
        with pytest.raises(psycopg.OperationalError):
            _connect(url)
        deadline = started + 5
        while proxy.is_down and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proxy.is_down
        assert proxy.outage_ended_at is not None and proxy.outage_started_at is not None
        assert proxy.outage_ended_at - proxy.outage_started_at >= 0.6
        with _connect(url) as again:
            assert again.execute("select 1").fetchone() == (1,)


def test_blocking_outage_lasts_its_seconds() -> None:
    with DbOutageProxy.for_url(POSTGRES_URL) as proxy:
        started = time.monotonic()
        proxy.outage(0.3)
        assert time.monotonic() - started >= 0.3
        assert not proxy.is_down
        with _connect(proxy.url_for(POSTGRES_URL)) as again:
            assert again.execute("select 1").fetchone() == (1,)


def test_stop_closes_the_listener_and_connections() -> None:
    proxy = DbOutageProxy.for_url(POSTGRES_URL).start()
    conn = _connect(proxy.url_for(POSTGRES_URL))
    port = proxy.port
    proxy.stop()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("select 1")
    conn.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 1):
        pass
