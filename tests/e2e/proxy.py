"""A TCP proxy that behaves like a cloud load balancer in front of the portal, for browser tests.

    proxy = CuttingProxy(target_port=web.port, cut_after=3.0)
    proxy.start()              # listens on 127.0.0.1:proxy.port, in a thread of its own
    ...                        # the browser talks to proxy.url
    proxy.set_down()           # cut every open connection; close each new one at once
    proxy.set_up()             # accept and forward again
    proxy.stop()

Every accepted connection is forwarded byte for byte to ``127.0.0.1:target_port`` and, when
``cut_after`` is set, closed (both sides) that many seconds after it was accepted, whatever is
in flight: a long response such as the event stream ends mid-body, as it does when a load
balancer's response timeout fires. While the proxy is *down* it still listens, but closes each
new connection before forwarding a byte (the browser sees an empty response, as from a
balancer with no healthy backend), and ``set_down()`` cuts the open ones too.

The proxy runs its own asyncio loop in a daemon thread, so a synchronous test (Playwright's
sync API) can drive it; every public method is safe to call from the test's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass

logger = logging.getLogger(__name__)

__all__ = ["CuttingProxy", "ProxyStats"]

HOST = "127.0.0.1"
CHUNK_BYTES = 64 * 1024
START_TIMEOUT_SECONDS = 5.0


@dataclass
class ProxyStats:
    """What the proxy did so far (a copy; read it with :meth:`CuttingProxy.stats`)."""

    accepted: int = 0
    """Connections accepted and forwarded."""
    cut: int = 0
    """Forwarded connections the proxy closed itself (timer or ``set_down()``)."""
    refused: int = 0
    """Connections closed at once because the proxy was down (or the backend was)."""


class _Link:
    """One client connection and its backend connection."""

    def __init__(self, client: asyncio.StreamWriter, backend: asyncio.StreamWriter) -> None:
        self.client = client
        self.backend = backend
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.backend):
            with contextlib.suppress(Exception):
                writer.close()


class CuttingProxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>``, cutting connections."""

    def __init__(self, *, target_port: int, cut_after: float | None = 3.0) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.port: int | None = None
        self._stats = ProxyStats()
        self._down = False
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    # -- control, from any thread -------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the address the browser uses."""
        if self.port is None:
            raise RuntimeError("the proxy is not started")
        return f"http://{HOST}:{self.port}"

    def start(self) -> CuttingProxy:
        """Listen on a free port of 127.0.0.1 (see :attr:`port`); returns once it listens."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already started")
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="cutting-proxy", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_SECONDS) or self.port is None:
            raise RuntimeError("the proxy did not start listening")
        logger.info("proxy listening port=%s target=%s", self.port, self.target_port)
        return self

    def stop(self) -> None:
        """Close the listener and every connection, stop the loop and join its thread."""
        if self._thread is None or self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        future.result(START_TIMEOUT_SECONDS)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_SECONDS)
        self._thread = None

    def set_down(self) -> None:
        """From now on close new connections at once, and cut the open ones."""
        self._call(self._go_down)

    def set_up(self) -> None:
        """Accept and forward new connections again."""
        self._call(self._go_up)

    @property
    def is_down(self) -> bool:
        return self._down

    def stats(self) -> ProxyStats:
        """A copy of the counters."""
        return self._call(lambda: ProxyStats(**vars(self._stats)))

    def _call(self, function):
        if self._loop is None or self._thread is None:
            raise RuntimeError("the proxy is not started")
        done: asyncio.Future = asyncio.run_coroutine_threadsafe(_wrap(function), self._loop)
        return done.result(START_TIMEOUT_SECONDS)

    # -- the loop's side ----------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, HOST, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _go_down(self) -> None:
        self._down = True
        for link in list(self._links):
            self._stats.cut += 1
            link.close()
        logger.info("proxy down port=%s", self.port)

    def _go_up(self) -> None:
        self._down = False
        logger.info("proxy up port=%s", self.port)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for link in list(self._links):
            link.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            self._stats.refused += 1
            writer.close()
            return
        try:
            backend_reader, backend_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            self._stats.refused += 1
            writer.close()
            return
        self._stats.accepted += 1
        link = _Link(writer, backend_writer)
        self._links.add(link)
        cut = None
        if self.cut_after is not None:
            cut = asyncio.get_running_loop().call_later(self.cut_after, self._cut, link)
        try:
            await asyncio.gather(
                _pump(reader, backend_writer),
                _pump(backend_reader, writer),
            )
        finally:
            if cut is not None:
                cut.cancel()
            link.close()
            self._links.discard(link)

    def _cut(self, link: _Link) -> None:
        if not link.closed:
            self._stats.cut += 1
            link.close()


async def _wrap(function):
    return function()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy bytes until either side closes; half-closes ``sink`` when ``source`` ends."""
    try:
        while chunk := await source.read(CHUNK_BYTES):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, OSError):
        pass
