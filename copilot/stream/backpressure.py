"""How fast a client takes a stream's bytes: the one place that knows Daphne and Twisted.

ASGI gives an application no backpressure: ``await send(...)`` returns as soon as the server
has the bytes. Under Daphne the bytes then sit in Twisted's transport write buffer until the
client reads them, so a client that never reads kept a whole replay in the server's memory.
Daphne's ``send`` is ``functools.partial(server.handle_reply, protocol)``, where ``protocol``
is the request (``daphne.http_protocol.WebRequest``, a ``twisted.web.http.Request``), and
Twisted's public producer API says exactly when its transport buffer fills and drains:
``request.registerProducer(producer, streaming=True)`` with an ``IPushProducer``, whose
``pauseProducing`` the transport calls when its buffer passes ``bufferSize`` (64 KiB) and
``resumeProducing`` once the buffer is empty again (``stopProducing`` when the connection
is lost). Daphne runs Twisted on the asyncio reactor in the event loop's own thread, so those
calls come on the loop's thread (checked, and handed over with ``call_soon_threadsafe`` if
not), and ``pauseProducing`` comes inside the very ``send`` that filled the buffer.

:func:`flow_for` returns a :class:`Flow` for a stream's ``send``:

- :class:`TwistedFlow` under Daphne: ``paused`` while the transport's buffer is full,
  ``drained()`` waits for it to empty, ``unsent`` counts the bytes handed over since it
  filled, ``took_nothing()`` says whether the client took no byte since it was last asked
  (the buffer stayed full, and the kernel's queue of unacknowledged bytes did not shrink:
  Linux's ``SIOCOUTQ``; elsewhere the buffer alone), and ``abort()`` drops the connection at
  once, buffer and all. The kernel's queue matters: the kernel takes megabytes off a
  socket's hands before Twisted's buffer fills, and wakes Twisted only once a third of its
  queue is free, so a slow client can read for many seconds before Twisted's buffer drains.
- :class:`AssumeDrained` anywhere else (a test's ``ApplicationCommunicator``, another ASGI
  server): every ``send`` counts as drained, so ``unsent`` stays 0 and a stream is never
  dropped for it; the pace is whatever the server's ``send`` gives. Uvicorn and Hypercorn
  make ``send`` itself wait while their transport's buffer is above its high-water mark, so
  there the replay is paced and bounded by ``send``; under a server whose ``send`` never
  waits, nothing bounds what a slow reader holds but the stream's rotation.

The ``send`` a consumer holds may be wrapped by Channels' ``SessionMiddleware`` (its
``InstanceSessionWrapper.send`` keeps the server's ``send`` as ``real_send``): looked through.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import sys
import threading
from typing import Any

logger = logging.getLogger(__name__)

#: How many wrappers of ``send`` (middleware) to look through for the server's own.
MAX_SEND_WRAPPERS = 8


class Flow:
    """A stream's view of its connection: can it take more now, and how much is waiting."""

    name = "base"
    paused = False
    #: Bytes handed to the server since its buffer filled (0 while it takes writes).
    unsent = 0

    def sent(self, size: int) -> None:
        """``size`` bytes were just handed to the server."""

    async def drained(self) -> bool:
        """Wait until the connection takes writes; False once it is gone."""
        return True

    def took_nothing(self) -> bool:
        """Whether the client took no byte since the last call (and writes were refused)."""
        return False

    def abort(self) -> bool:
        """Drop the connection now, unsent bytes and all; False where that is not possible."""
        return False

    def release(self) -> None:
        """Stop watching the connection (before the response's last bytes)."""


class AssumeDrained(Flow):
    """Any server but Daphne: no buffer to watch; every ``send`` counts as drained."""

    name = "assume-drained"


class TwistedFlow(Flow):
    """Daphne: an ``IPushProducer`` registered on the Twisted request (see the module doc)."""

    name = "twisted"

    def __init__(self, request: Any) -> None:
        self._request = request
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._writable: asyncio.Event | None = None  # made on the first wait (a stream's bytes)
        self._drains = 0
        self._seen: tuple[bool, int, int | None] = (False, 0, None)  # at the last took_nothing()
        self._gone = False
        self._registered = False
        request.registerProducer(self, True)
        self._registered = True
        # A transport already full when we arrive (never so on a fresh connection) would not
        # tell a producer registered after the fact.
        if getattr(getattr(request, "channel", None), "_waitingForTransport", False):
            self.pauseProducing()

    # -- IPushProducer, called by Twisted -----------------------------------------------

    def pauseProducing(self) -> None:
        self._call(self._pause)

    def resumeProducing(self) -> None:
        self._call(self._resume)

    def stopProducing(self) -> None:
        self._call(self._stop)

    def _call(self, change) -> None:
        if threading.get_ident() == self._thread:
            change()
        else:  # not under Daphne's asyncio reactor as we know it: hand over to the loop
            logger.warning("stream backpressure callback off the event loop's thread")
            self._loop.call_soon_threadsafe(change)

    def _pause(self) -> None:
        self.paused = True
        if self._writable is not None:
            self._writable.clear()

    def _resume(self) -> None:
        self.paused = False
        self.unsent = 0
        self._drains += 1
        self._wake()

    def _stop(self) -> None:
        self._gone = True
        self._registered = False  # Twisted forgets the producer with the connection
        self._wake()  # there is nothing to wait for any more

    def _wake(self) -> None:
        if self._writable is not None:
            self._writable.set()

    # -- Flow ------------------------------------------------------------------------

    def sent(self, size: int) -> None:
        if self.paused:
            self.unsent += size

    async def drained(self) -> bool:
        while self.paused and not self._gone:
            if self._writable is None:
                self._writable = asyncio.Event()
            await self._writable.wait()
        return not self._gone

    def took_nothing(self) -> bool:
        queued = self._kernel_queue()
        was_paused, drains, was_queued = self._seen
        self._seen = (self.paused, self._drains, queued)
        shrank = queued is not None and was_queued is not None and queued < was_queued
        return self.paused and was_paused and drains == self._drains and not shrank

    def _kernel_queue(self) -> int | None:
        """Bytes the kernel holds for the client, not yet acknowledged (Linux); else None."""
        try:
            import fcntl
            import termios

            socket = self._request.transport.getHandle()
            raw = fcntl.ioctl(socket.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # SIOCOUTQ
        except (ImportError, AttributeError, OSError, ValueError):
            return None
        return struct.unpack("i", raw)[0]

    def abort(self) -> bool:
        self.release()
        self._gone = True
        self._wake()
        transport = getattr(self._request, "transport", None)
        abort = getattr(transport, "abortConnection", None)
        if abort is None:
            return False
        abort()
        return True

    def release(self) -> None:
        if not self._registered:
            return
        self._registered = False
        request = self._request
        if getattr(request, "channel", None) is not None and request.producer is self:
            request.unregisterProducer()


def _twisted_request(send: Any) -> Any | None:
    """The ``twisted.web.http.Request`` behind Daphne's ``send``, or None."""
    http = sys.modules.get("twisted.web.http")
    if http is None:
        return None  # Twisted not even imported: not Daphne
    for _ in range(MAX_SEND_WRAPPERS):
        if isinstance(send, functools.partial):
            if send.args and isinstance(send.args[0], http.Request):
                return send.args[0]
            send = send.func
            continue
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            return None
        send = inner
    return None


def flow_for(send: Any) -> Flow:
    """The :class:`Flow` of the connection behind an ASGI ``send`` (see the module doc)."""
    request = _twisted_request(send)
    if request is None or getattr(request, "finished", False) or request.producer is not None:
        return AssumeDrained()
    if getattr(request, "channel", None) is None:
        # The client left before the stream opened (it gave up waiting while the database
        # was slow to answer, say): nothing to pace; its disconnect ends the stream.
        return AssumeDrained()
    try:
        return TwistedFlow(request)
    except Exception:  # the connection went away just now, or Twisted changed
        logger.warning("stream backpressure unavailable, assuming drained", exc_info=True)
        return AssumeDrained()
