"""A TCP proxy in front of PostgreSQL that can play a database restart or failover.

    with DbOutageProxy() as proxy:               # 127.0.0.1:<free port> -> 127.0.0.1:5432
        env["DATABASE_URL"] = proxy.url_for(database_url)
        ...
        proxy.outage(3)                          # drop every connection, refuse new ones for 3 s
        proxy.begin_outage(); ...; proxy.end_outage()   # an outage held until told

From the portal's side this is what a managed PostgreSQL restart looks like: every open
connection is closed at once (both sides; the client reads EOF or a reset, psycopg raises
``OperationalError``), and new connections are accepted and closed at once until the database
is "back". No root, no ``pg_ctl``: the test or benchmark starts it on 127.0.0.1 and stops it.
It imports nothing of pytest or Django, so a benchmark can use it too.

:func:`database_cut` cuts whichever database a URL names: PostgreSQL through this proxy,
SQLite by a connection of the caller's own holding the file's write lock (past the busy
timeout, the writers meet "database is locked").
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

__all__ = ["DatabaseCut", "DbOutageProxy", "database_cut"]

_ACCEPT_POLL_SECONDS = 0.2
_CHUNK = 65536


def _hard_close(sock: socket.socket) -> None:
    """Close with a reset (linger 0), as a dying server's kernel would: no graceful FIN wait."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    """One proxied connection: the client's socket and ours to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self._closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _hard_close(self.client)
        _hard_close(self.server)


class DbOutageProxy:
    """Relay 127.0.0.1:``port`` to ``target``; drop and refuse connections on demand.

    Thread-based (one accept thread, two pump threads per connection), so it works from sync
    tests, async tests and plain scripts alike. Counters (``accepted``, ``refused``,
    ``dropped``) let a test check that the outage really hit someone.
    """

    def __init__(self, *, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self.refused = 0
        self.dropped = 0
        self.outage_started_at: float | None = None  # time.monotonic() of the last begin_outage
        self.outage_ended_at: float | None = None  # time.monotonic() of the last end_outage
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._down = threading.Event()
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._end_timer: threading.Timer | None = None

    @classmethod
    def for_url(cls, database_url: str) -> DbOutageProxy:
        """A proxy in front of the server ``database_url`` names."""
        parts = urlsplit(database_url)
        return cls(target_host=parts.hostname or "127.0.0.1", target_port=parts.port or 5432)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> DbOutageProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(_ACCEPT_POLL_SECONDS)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"db-outage-proxy-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._end_timer is not None:
            self._end_timer.cancel()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        self._drop(count=False)

    def __enter__(self) -> DbOutageProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def url_for(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by the proxy's (user, password,
        database name and query kept)."""
        if not self.port:
            raise RuntimeError("start() the proxy before asking for its URL")
        parts = urlsplit(database_url)
        userinfo = ""
        if "@" in parts.netloc:
            userinfo = parts.netloc.rsplit("@", 1)[0] + "@"
        netloc = f"{userinfo}127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    # -- outages -----------------------------------------------------------------------------

    @property
    def is_down(self) -> bool:
        return self._down.is_set()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def drop_all(self) -> int:
        """Close every open connection (both sides) now; new ones still pass. Returns how many."""
        return self._drop(count=True)

    def begin_outage(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`end_outage`."""
        if self._end_timer is not None:
            self._end_timer.cancel()
            self._end_timer = None
        self._down.set()
        self.outage_started_at = time.monotonic()
        self._drop(count=True)

    def end_outage(self) -> None:
        """Accept connections again."""
        if self._down.is_set():
            self.outage_ended_at = time.monotonic()
        self._down.clear()

    def outage(self, seconds: float, *, block: bool = True) -> None:
        """An outage of ``seconds``: blocks for it, or (``block=False``) returns at once and ends
        it from a timer thread."""
        self.begin_outage()
        if block:
            time.sleep(seconds)
            self.end_outage()
            return
        timer = threading.Timer(seconds, self.end_outage)
        timer.daemon = True
        self._end_timer = timer
        timer.start()

    # -- internals ---------------------------------------------------------------------------

    def _drop(self, *, count: bool) -> int:
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for pair in pairs:
            pair.close()
        if count:
            self.dropped += len(pairs)
        return len(pairs)

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._down.is_set():
                self.refused += 1
                _hard_close(client)
                continue
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        client.settimeout(None)
        try:
            server = socket.create_connection((self.target_host, self.target_port), timeout=10)
        except OSError:
            _hard_close(client)
            return
        server.settimeout(None)
        pair = _Pair(client, server)
        with self._lock:
            if self._down.is_set() or self._stopping.is_set():
                refuse = True
            else:
                refuse = False
                self._pairs.add(pair)
                self.accepted += 1
        if refuse:
            self.refused += 1
            pair.close()
            return
        for source, sink in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(pair, source, sink), daemon=True).start()

    def _pump(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._pairs.discard(pair)
        pair.close()


@dataclass(frozen=True)
class DatabaseCut:
    """A database that can be cut: processes connect with ``url``; ``begin()`` starts an
    outage and returns the callable that ends it."""

    url: str
    begin: Callable[[], Callable[[], None]]

    def outage(self, seconds: float) -> None:
        """An outage of ``seconds`` (blocks for it)."""
        end = self.begin()
        try:
            time.sleep(seconds)
        finally:
            end()


@contextlib.contextmanager
def database_cut(database_url: str) -> Iterator[DatabaseCut]:
    """PostgreSQL: through a :class:`DbOutageProxy` (every connection dropped, new ones
    refused). SQLite (``sqlite:///<path>``): the URL as it is, and an outage is a connection of
    this process holding the write lock (``BEGIN IMMEDIATE``); closing it ends the outage."""
    if database_url.startswith("sqlite:"):
        path = database_url.removeprefix("sqlite:///")

        def hold_lock() -> Callable[[], None]:
            holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            holder.execute("BEGIN IMMEDIATE")
            return holder.close  # (closing rolls the empty transaction back)

        yield DatabaseCut(url=database_url, begin=hold_lock)
        return
    with DbOutageProxy.for_url(database_url) as proxy:

        def drop_and_refuse() -> Callable[[], None]:
            proxy.begin_outage()
            return proxy.end_outage

        yield DatabaseCut(url=proxy.url_for(database_url), begin=drop_and_refuse)
