"""The job event stream: ``GET /jobs/<id>/events`` as server-sent events.

A Channels ``AsyncHttpConsumer`` that keeps its response open on purpose: ``http_request``
sends the headers, starts the replay and *returns* with the response still open; live events
reach it through the process's :class:`~copilot.stream.hub.StreamHub`. The polling loop is
never here; it is in the runner. The order that makes a resume exact:

1. register with the hub (which has joined the job's group) first, buffering live events,
   so nothing published from then on can be missed;
2. replay ``seq > Last-Event-ID`` from the database (the log is the truth);
3. forward live events, dropping any ``seq`` already sent and filling any gap from the
   database (the channel layer may drop a message).

Cost per stream, by design (``bench/streams.py`` measures it): no thread, no database
connection while waiting (its reads go through ``database_sync_to_async``), no channel of its
own (the hub has one per process). Heartbeats (``: ping``) keep proxies and the browser's
watchdog fed; after ``COPILOT_STREAM_MAX_SECONDS`` the stream sends ``event: reconnect`` and
ends, before a load balancer would cut it.

Limits (``bench/slow_readers.py`` measures the third):

- only ``GET``: any other method (``HEAD`` too: the only thing here is an open-ended stream,
  whose headers alone tell nothing) gets ``405`` with ``Allow: GET``;
- ``COPILOT_MAX_STREAMS_PER_USER`` open streams per user and web process (counted by the
  hub); the next gets ``429`` with ``Retry-After``;
- a slow reader is bounded: the replay is handed to the server :data:`SLICE_BYTES` at a
  time, each slice (and each next page) only once the connection took the ones before
  (:mod:`copilot.stream.backpressure`); a live event that finds the connection full, or is
  bigger than a slice, is sent the same way, from the database. So a client that stops
  reading holds at most about one page here. A client that took nothing for a whole
  heartbeat while the stream holds over :data:`MAX_UNSENT_BYTES` for it is dropped (the
  connection aborted, its buffers freed), and so is one still full at a planned end; it
  resumes from its ``Last-Event-ID``;
- a stream whose login goes (session logged out, API token deleted or expired, user
  deactivated) ends within one heartbeat (the hub checks all the process's streams in one
  query); the client reconnects and gets ``401`` (the browser's shows its login link).

During a database restart or failover a new stream gets ``503`` with ``Retry-After``; an open
one keeps its connection and its heartbeats, and fills any gap once the database is back
(:mod:`copilot.stream.outage`, which bounds the wait; past it, ``reconnect``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Coroutine
from typing import NoReturn, TypeVar
from urllib.parse import parse_qs

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from copilot.jobs.db_errors import RETRY_AFTER_SECONDS as OUTAGE_RETRY_AFTER_SECONDS
from copilot.jobs.db_errors import UNAVAILABLE_DETAIL, is_outage, outage_reason
from copilot.jobs.metrics import STREAM_REPLAYED_EVENTS
from copilot.jobs.presenters import job_as_dict
from copilot.logs import request_id_from, request_id_var, user_id_var
from copilot.stream import outage
from copilot.stream.auth import Refusal, stream_login
from copilot.stream.backpressure import AssumeDrained, Flow, flow_for
from copilot.stream.hub import StreamHub, event_frame
from copilot.stream.replay import event_seq, is_terminal, load_job, replay_page
from copilot.stream.sse import encode_comment, encode_event, parse_last_event_id

logger = logging.getLogger(__name__)

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
    (b"x-content-type-options", b"nosniff"),
]

#: Bytes handed to the server at a time, each once the connection took the last: the size of
#: Twisted's transport buffer, so a client that stops reading leaves about that much there.
SLICE_BYTES = 64 * 1024

#: A client that took nothing for a whole heartbeat while the stream holds more than this
#: for it is dropped. Well above a page of ordinary events (a few hundred bytes each), so
#: only a stream stuck on a big result is dropped early; below it a stuck stream costs at
#: most this much until its rotation. A client that is merely slow keeps taking bytes and is
#: never dropped (a bound on bytes alone would drop it on every event bigger than the bound,
#: and again after each reconnect). A constant: it bounds memory per stream, and
#: COPILOT_MAX_STREAMS_PER_USER the streams.
MAX_UNSENT_BYTES = 1024 * 1024

#: ``Retry-After`` of a 429: a slot frees when one of the user's streams closes.
RETRY_AFTER_SECONDS = 10

T = TypeVar("T")


class JobEventStream(AsyncHttpConsumer):
    """One browser following one job."""

    # No channel of its own: live events come from the StreamHub, which the stream's own
    # tasks and the hub's one receiver drive. (Channels gives a consumer a channel, and a
    # task waiting on it, only when it names a layer.)
    channel_layer_alias = "copilot-streams-use-the-hub"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.job_id: uuid.UUID | None = None
        self.session_key: str | None = None
        self.token_id: int | None = None  # the ApiToken that opened it, if one did
        self.user_id: int | None = None
        self.last_sent = 0
        self.open = False
        self.replaying = True  # live events wait in `pending` until the replay is done
        self.pending: list[dict] = []
        self._tasks: set[asyncio.Task] = set()
        self._lag_mark: int | None = None
        self._hub: StreamHub | None = None
        self._slot: tuple[StreamHub, int] | None = None  # the user's stream, counted
        self._flow: Flow = AssumeDrained()
        self._writing = False  # a paced write is under way: only it may write
        self._held = 0  # the size of that write's bytes, in memory until it is done
        self._revoked = False
        self.request_id: str | None = None  # X-Request-ID, on the log lines (copilot.logs)

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # however the consumer ends, its slot and its hub membership go
            with contextlib.suppress(Exception):
                await self._cleanup()

    async def dispatch(self, message: dict) -> None:
        # Like AsyncConsumer.dispatch, without its close_old_connections() hop per message.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    @property
    def unsent(self) -> int:
        """Bytes this process holds for the client: the paced write under way (all of it, as
        it sits in memory until its last slice is handed over), and what went to a full
        server buffer since it filled."""
        return self._held + self._flow.unsent

    # -- opening -------------------------------------------------------------------------

    async def http_request(self, message: dict) -> None:
        if self.request_id is None:
            headers = dict(self.scope.get("headers", []))
            self.request_id = request_id_from(headers.get(b"x-request-id"))
            request_id_var.set(self.request_id)
        if self.scope.get("method") != "GET":
            await self._answer(405, b"This is an event stream: GET it.\n", [(b"allow", b"GET")])
        if message.get("more_body"):
            return  # a GET has no body worth waiting for; answer once it is all in
        login = await self._unless_outage(stream_login(self.scope))
        if isinstance(login, Refusal):
            await self._answer(401, login.body, login.headers)
        user = login.user
        hub = StreamHub.current()
        if not hub.admit(user.pk, limit=settings.COPILOT_MAX_STREAMS_PER_USER):
            logger.info("stream refused, too many streams user=%s", user.pk)
            await self._answer(
                429,
                b"Too many open streams: close another page of this portal, then try again.\n",
                [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
            )
        self._slot = (hub, user.pk)
        user_id_var.set(user.pk)
        job = await self._unless_outage(load_job(self.scope["url_route"]["kwargs"]["job_id"], user))
        if job is None:
            await self._answer(404, b"Not found.\n")
        last = self._last_event_id()
        if job.is_terminal and last >= job.last_event_seq:
            await self._answer(204, b"")
        self.job_id = job.id
        self.user_id = user.pk
        self.session_key, self.token_id = login.session_key, login.token_id
        try:
            await hub.join(self)
        except Exception:
            # The channel layer (Redis) is down: no live events to promise. The client
            # retries with backoff and replays from the database once it is back.
            logger.warning("stream refused, channel layer unavailable job=%s", job.id)
            await self._answer(503, b"Live updates are unavailable for a moment.\n")
        self._hub = hub
        await self.send_headers(status=200, headers=[*SSE_HEADERS, self._request_id_header()])
        self._flow = flow_for(self.base_send)
        self.open = True
        # Servers send the headers with the first body bytes: send some now, so a client that
        # resumes with nothing new to replay sees the stream open at once, not at the first ping.
        await self._write(encode_comment("open"))
        snapshot = encode_event(event="snapshot", data=job_as_dict(job)) if last == 0 else b""
        self.last_sent = last
        self._spawn(self._tick())
        self._spawn(self._replay(snapshot))
        logger.debug("stream open job=%s from=%s flow=%s", job.id, last, self._flow.name)

    async def _unless_outage(self, call: Awaitable[T]) -> T:
        """``call``'s result; ``503`` with ``Retry-After`` when the database is away."""
        try:
            return await call
        except Exception as exc:
            if not is_outage(exc):
                raise
            logger.warning("stream refused, database unavailable reason=%s", outage_reason(exc))
            await self._answer(
                503,
                UNAVAILABLE_DETAIL.encode() + b"\n",
                [(b"retry-after", str(OUTAGE_RETRY_AFTER_SECONDS).encode())],
            )

    def _request_id_header(self) -> tuple[bytes, bytes]:
        return (b"x-request-id", (self.request_id or "").encode("latin-1"))

    def _last_event_id(self) -> int:
        for name, value in self.scope.get("headers", []):
            if name == b"last-event-id":
                return parse_last_event_id(value.decode("latin-1"))
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        return parse_last_event_id((query.get("last_event_id") or [None])[0])

    async def _answer(self, status: int, body: bytes, headers: list | None = None) -> NoReturn:
        self._release_slot()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"cache-control", b"no-store"),
            self._request_id_header(),
            *(headers or []),
        ]
        await self.send_response(status, body, headers=headers)
        raise StopConsumer()

    # -- events --------------------------------------------------------------------------

    async def deliver(self, event: dict, frame: bytes) -> None:
        """A live event from the hub (called in order, one stream after the other)."""
        if not self.open:
            return
        if self.replaying:
            self.pending.append(event)
            return
        seq = event["seq"]
        if seq <= self.last_sent:
            return  # already sent (replayed, or delivered twice)
        if seq > self.last_sent + 1 or self._flow.paused or len(frame) > SLICE_BYTES:
            # The layer dropped something (the database has it), or the connection has not
            # taken what it has, or the frame is big: the catch-up sends it, at the client's
            # pace, and the hub moves on to the next stream at once.
            self.pending.append(event)
            self.replaying = True
            self._spawn(self._catch_up())
            return
        self.last_sent = seq
        await self._write(frame)
        if is_terminal(event):
            await self._finish()

    async def _replay(self, snapshot: bytes) -> None:
        """The snapshot (on a fresh connection), then the log after ``last_sent``."""
        if snapshot and not await self._write_paced(snapshot):
            return
        del snapshot
        await self._catch_up()

    async def _catch_up(self) -> None:
        """Send what the database has after ``last_sent``, then what arrived meanwhile."""
        self.replaying = True
        try:
            while self.open:
                if not await self._flow.drained():
                    return  # the next page is read only once the client took the last one
                try:
                    page = await outage.read_through_outage(
                        functools.partial(replay_page, self.job_id, self.last_sent),
                        wanted=lambda: self.open,
                    )
                except outage.DatabaseAway:
                    await self._end("database unavailable")
                    return
                if page is not None:
                    if not await self._write_paced(page.data):
                        return
                    STREAM_REPLAYED_EVENTS.inc(page.last_seq - self.last_sent)
                    self.last_sent = page.last_seq
                    if page.terminal:
                        await self._finish()
                        return
                    if page.full:
                        continue
                pending, self.pending = sorted(self.pending, key=event_seq), []
                behind = False
                for event in pending:
                    if event["seq"] <= self.last_sent:
                        continue
                    if event["seq"] > self.last_sent + 1:
                        behind = True  # the database will have it on the next read
                        break
                    if not await self._write_paced(event_frame(event)):
                        return
                    self.last_sent = event["seq"]
                    if is_terminal(event):
                        await self._finish()
                        return
                if not (behind and page) and not self.pending:
                    return
        finally:
            self.replaying = False

    def check_lag(self, newest: int) -> None:
        """From the hub: act when the database stays ahead of us across two checks."""
        if newest <= self.last_sent or not self.open or self.replaying:
            self._lag_mark = None
        elif self._lag_mark != self.last_sent:
            self._lag_mark = self.last_sent  # maybe just in flight; look again next time
        else:
            self._lag_mark = None
            self._spawn(self._resync())

    def revoke(self) -> None:
        """From the hub: the stream's session or token is gone, or its user is inactive."""
        if self.open and not self._revoked:
            self._revoked = True
            logger.info("stream ended, login gone job=%s user=%s", self.job_id, self.user_id)
            self._spawn(self._end("login gone"))

    async def _resync(self) -> None:
        hub, job_id = self._hub, self.job_id
        if hub is None or job_id is None:
            return  # the stream has closed (or never opened): nothing to rejoin
        logger.info("stream resync job=%s after=%s", job_id, self.last_sent)
        try:
            await hub.rejoin(job_id)
        except Exception:
            # The layer is down: the client must come back later and replay from the database.
            await self._end("channel layer unavailable")
            return
        if not self.replaying:
            await self._catch_up()

    async def _tick(self) -> None:
        """One timer per stream: heartbeats, the slow-reader check, the planned rotation."""
        loop = asyncio.get_running_loop()
        close_at = loop.time() + settings.COPILOT_STREAM_MAX_SECONDS
        while self.open:
            await asyncio.sleep(
                max(min(settings.COPILOT_HEARTBEAT_SECONDS, close_at - loop.time()), 0)
            )
            if loop.time() >= close_at:
                await self._end("rotation")
                return
            if self._flow.took_nothing() and self.unsent > MAX_UNSENT_BYTES:
                await self._drop("slow reader")
                return
            if not (self._writing or self._flow.paused):
                await self._write(encode_comment("ping"))

    # -- writing and closing -------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        if self.open:
            await self.send_body(data, more_body=True)
            self._flow.sent(len(data))

    async def _write_paced(self, data: bytes) -> bool:
        """Hand ``data`` over a slice at a time, each once the connection took the last."""
        self._writing = True
        self._held = len(data)
        try:
            for start in range(0, len(data), SLICE_BYTES):
                if not await self._flow.drained() or not self.open:
                    return False
                await self._write(data[start : start + SLICE_BYTES])
            return self.open
        finally:
            self._writing = False
            self._held = 0

    async def _end(self, reason: str) -> None:
        """A planned end: ``event: reconnect``, unless the client has bytes still waiting."""
        if self._writing or self._flow.paused:
            await self._drop(reason)  # they would wait behind those, or split a frame
        else:
            await self._close(encode_event(event="reconnect", data={"after": self.last_sent}))

    async def _drop(self, reason: str) -> None:
        """Drop the connection with whatever it has not taken; the client resumes later."""
        if not self.open:
            return
        log = logger.warning if reason == "slow reader" else logger.info
        log("stream dropped, %s job=%s unsent=%s", reason, self.job_id, self.unsent)
        self.open = False
        if not self._flow.abort():
            # No way to abort here: end the response (a client drops a half-sent frame).
            await self.send_body(b"", more_body=False)
        await self._cleanup()

    async def _close(self, last_bytes: bytes) -> None:
        """End the response (after ``last_bytes``) and let go of everything."""
        if self.open:
            self.open = False
            self._flow.release()  # Twisted wants its producer gone before the response ends
            await self.send_body(last_bytes, more_body=False)
        await self._cleanup()

    async def _finish(self) -> None:
        """After the terminal event: end the response."""
        await self._close(b"")

    async def http_disconnect(self, message: dict) -> None:
        self.open = False
        await self._cleanup()
        raise StopConsumer()

    def _spawn(self, coroutine: Coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release_slot(self) -> None:
        if self._slot is not None:
            hub, user_id = self._slot
            self._slot = None
            hub.release(user_id)

    async def _cleanup(self) -> None:
        self._release_slot()
        self._flow.release()
        if self._hub is not None:
            hub, self._hub = self._hub, None
            await hub.leave(self)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
