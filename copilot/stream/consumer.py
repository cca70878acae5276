"""The job event stream: ``GET /jobs/<id>/events`` as server-sent events.

A Channels ``AsyncHttpConsumer`` that keeps its response open on purpose: ``http_request``
sends the headers and the replay, then *returns* with the response still open; live events
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
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from copilot.jobs.exceptions import JobNotFound
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.presenters import job_as_dict
from copilot.jobs.selectors import events_after, job_get
from copilot.stream.hub import StreamHub, event_frame
from copilot.stream.sse import encode_comment, encode_event, parse_last_event_id

logger = logging.getLogger(__name__)

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
    (b"x-content-type-options", b"nosniff"),
]

#: Replay in pages of this many events, so a long log never sits in memory at once.
REPLAY_PAGE = 500


def _is_terminal(event: JobEvent | dict) -> bool:
    data = event.data if isinstance(event, JobEvent) else event.get("data")
    return bool(isinstance(data, dict) and data.get("terminal"))


def _seq(event: JobEvent | dict) -> int:
    return event.seq if isinstance(event, JobEvent) else event["seq"]


@database_sync_to_async
def _load_job(job_id: uuid.UUID, user) -> GenerationJob | None:
    try:
        return job_get(job_id=job_id, user=user)
    except JobNotFound:
        return None


@database_sync_to_async
def _events_after(job_id: uuid.UUID, seq: int) -> list[JobEvent]:
    return events_after(job_id=job_id, seq=seq, limit=REPLAY_PAGE)


class JobEventStream(AsyncHttpConsumer):
    """One browser following one job."""

    # No channel of its own: live events come from the StreamHub, which the stream's own
    # tasks and the hub's one receiver drive. (Channels gives a consumer a channel, and a
    # task waiting on it, only when it names a layer.)
    channel_layer_alias = "copilot-streams-use-the-hub"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.job_id: uuid.UUID | None = None
        self.last_sent = 0
        self.open = False
        self.replaying = True  # live events wait in `pending` until the replay is done
        self.pending: list[dict] = []
        self._tasks: set[asyncio.Task] = set()
        self._lag_mark: int | None = None
        self._hub: StreamHub | None = None

    async def dispatch(self, message: dict) -> None:
        # Like AsyncConsumer.dispatch, without its close_old_connections() hop per message.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # -- opening -------------------------------------------------------------------------

    async def http_request(self, message: dict) -> None:
        if message.get("more_body"):
            return  # a GET has no body worth waiting for; answer once it is all in
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._answer(401, b"Log in to follow this job.\n")
        job = await _load_job(self.scope["url_route"]["kwargs"]["job_id"], user)
        if job is None:
            await self._answer(404, b"Not found.\n")
        last = self._last_event_id()
        if job.is_terminal and last >= job.last_event_seq:
            await self._answer(204, b"")
        self.job_id = job.id
        hub = StreamHub.current()
        try:
            await hub.join(self)
        except Exception:
            # The channel layer (Redis) is down: no live events to promise. The client
            # retries with backoff and replays from the database once it is back.
            logger.warning("stream refused, channel layer unavailable job=%s", job.id)
            await self._answer(503, b"Live updates are unavailable for a moment.\n")
        self._hub = hub
        await self.send_headers(status=200, headers=SSE_HEADERS)
        self.open = True
        # Servers send the headers with the first body bytes: send some now, so a client that
        # resumes with nothing new to replay sees the stream open at once, not at the first ping.
        await self._write(encode_comment("open"))
        if last == 0:
            await self._write(encode_event(event="snapshot", data=job_as_dict(job)))
        self.last_sent = last
        await self._catch_up()
        if not self.open:
            raise StopConsumer()  # the job had already ended: the response is complete
        self._spawn(self._tick())
        logger.debug("stream open job=%s from=%s", job.id, last)

    def _last_event_id(self) -> int:
        for name, value in self.scope.get("headers", []):
            if name == b"last-event-id":
                return parse_last_event_id(value.decode("latin-1"))
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        return parse_last_event_id((query.get("last_event_id") or [None])[0])

    async def _answer(self, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]
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
        if seq > self.last_sent + 1:
            # The layer dropped something: the database has it.
            self.pending.append(event)
            self.replaying = True
            self._spawn(self._catch_up())
            return
        self.last_sent = seq
        await self._write(frame)
        if _is_terminal(event):
            await self._finish()

    async def _catch_up(self) -> None:
        """Send what the database has after ``last_sent``, then what arrived meanwhile."""
        self.replaying = True
        try:
            while self.open:
                events = await _events_after(self.job_id, self.last_sent)
                if events:
                    await self._write(b"".join(event_frame(e) for e in events))
                    self.last_sent = events[-1].seq
                    if _is_terminal(events[-1]):
                        await self._finish()
                        return
                    if len(events) == REPLAY_PAGE:
                        continue
                pending, self.pending = sorted(self.pending, key=_seq), []
                behind = False
                for event in pending:
                    if event["seq"] <= self.last_sent:
                        continue
                    if event["seq"] > self.last_sent + 1:
                        behind = True  # the database will have it on the next read
                        break
                    self.last_sent = event["seq"]
                    await self._write(event_frame(event))
                    if _is_terminal(event):
                        await self._finish()
                        return
                if not (behind and events) and not self.pending:
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

    async def _resync(self) -> None:
        hub, job_id = self._hub, self.job_id
        if hub is None or job_id is None:
            return  # the stream has closed (or never opened): nothing to rejoin
        logger.info("stream resync job=%s after=%s", job_id, self.last_sent)
        try:
            await hub.rejoin(job_id)
        except Exception:
            # The layer is down: the client must come back later and replay from the database.
            await self._close(encode_event(event="reconnect", data={"after": self.last_sent}))
            return
        if not self.replaying:
            await self._catch_up()

    async def _tick(self) -> None:
        """One timer per stream: heartbeats, then the planned rotation."""
        loop = asyncio.get_running_loop()
        close_at = loop.time() + settings.COPILOT_STREAM_MAX_SECONDS
        while self.open:
            await asyncio.sleep(
                max(min(settings.COPILOT_HEARTBEAT_SECONDS, close_at - loop.time()), 0)
            )
            if loop.time() >= close_at:
                await self._close(encode_event(event="reconnect", data={"after": self.last_sent}))
                return
            await self._write(encode_comment("ping"))

    # -- writing and closing -------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        if self.open:
            await self.send_body(data, more_body=True)

    async def _close(self, last_bytes: bytes) -> None:
        """End the response (after ``last_bytes``) and let go of everything."""
        if self.open:
            self.open = False
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

    async def _cleanup(self) -> None:
        if self._hub is not None:
            hub, self._hub = self._hub, None
            await hub.leave(self)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
