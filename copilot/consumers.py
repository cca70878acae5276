"""The job event stream: ``GET /jobs/<id>/events`` as server-sent events.

A Channels ``AsyncHttpConsumer`` that keeps its response open on purpose: ``http_request``
sends the headers and the replay, then *returns* with the response still open, and each
``job.event`` message from the channel layer lands in :meth:`JobEventStream.job_event`. The
polling loop is never here; it is in the runner. The order that makes a resume exact:

1. join the job's group first, so nothing published from now on can be missed;
2. replay ``seq > Last-Event-ID`` from the database (the log is the truth);
3. forward live events, dropping any ``seq`` already sent and filling any gap from the
   database (the channel layer may drop a message).

A waiting stream holds no thread and no database connection: its database reads go through
``database_sync_to_async`` (one shared thread; connections closed after each call), and it
skips Channels' per-message ``close_old_connections`` hop, which would cost every open
stream a thread hop for each event broadcast. Heartbeats (``: ping``) keep proxies and the
browser's watchdog fed; after ``COPILOT_STREAM_MAX_SECONDS`` the stream sends
``event: reconnect`` and closes, before a load balancer would cut it.

Nothing depends on a channel-layer message arriving: once per heartbeat, one query per
process (:class:`LagWatch`) compares every open stream with its job's newest ``seq``; a
stream that stays behind across two checks (a dropped message, a Redis restart that lost
its group membership) re-joins its group and replays what it missed from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from copilot.broadcast import job_group
from copilot.exceptions import JobNotFound
from copilot.models import GenerationJob, JobEvent
from copilot.presenters import job_as_dict
from copilot.selectors import events_after, job_get
from copilot.sse import encode_comment, encode_event, parse_last_event_id

logger = logging.getLogger(__name__)

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
    (b"x-content-type-options", b"nosniff"),
]

#: Replay in pages of this many events, so a long log never sits in memory at once.
REPLAY_PAGE = 500


def _frame(event: JobEvent | dict) -> bytes:
    if isinstance(event, JobEvent):
        event = event.as_message()
    return encode_event(id=event["seq"], event=event["type"], data=event["data"])


def _is_terminal(event: JobEvent | dict) -> bool:
    data = event.data if isinstance(event, JobEvent) else event.get("data")
    return bool(isinstance(data, dict) and data.get("terminal"))


@database_sync_to_async
def _load_job(job_id: uuid.UUID, user) -> GenerationJob | None:
    try:
        return job_get(job_id=job_id, user=user)
    except JobNotFound:
        return None


@database_sync_to_async
def _events_after(job_id: uuid.UUID, seq: int) -> list[JobEvent]:
    return events_after(job_id=job_id, seq=seq, limit=REPLAY_PAGE)


@database_sync_to_async
def _newest_seqs(job_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    return dict(GenerationJob.objects.filter(pk__in=job_ids).values_list("id", "last_event_seq"))


class LagWatch:
    """Per event loop: every heartbeat, one query finds the open streams that fell behind."""

    _by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.streams: dict[uuid.UUID, set[JobEventStream]] = {}
        self.task: asyncio.Task | None = None

    @classmethod
    def current(cls) -> LagWatch:
        loop = asyncio.get_running_loop()
        watch = cls._by_loop.get(loop)
        if watch is None:
            watch = cls._by_loop[loop] = cls()
        return watch

    def add(self, stream: JobEventStream) -> None:
        self.streams.setdefault(stream.job_id, set()).add(stream)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="stream-lag")

    def discard(self, stream: JobEventStream) -> None:
        streams = self.streams.get(stream.job_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self.streams[stream.job_id]

    async def _run(self) -> None:
        while self.streams:
            await asyncio.sleep(settings.COPILOT_HEARTBEAT_SECONDS)
            try:
                newest = await _newest_seqs(list(self.streams))
            except Exception:
                logger.warning("stream lag check failed", exc_info=True)
                continue
            for job_id, streams in list(self.streams.items()):
                for stream in list(streams):
                    stream.check_lag(newest.get(job_id, 0))


class JobEventStream(AsyncHttpConsumer):
    """One browser following one job."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.job_id: uuid.UUID | None = None
        self.group: str | None = None
        self.last_sent = 0
        self.open = False
        self._timers: list[asyncio.Task] = []
        self._lag_mark: int | None = None

    async def dispatch(self, message: dict) -> None:
        # Like AsyncConsumer.dispatch, without its close_old_connections() hop per message:
        # live events touch no database, and that hop would cost every stream a thread switch.
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
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        job = await _load_job(job_id, user)
        if job is None:
            await self._answer(404, b"Not found.\n")
        last = self._last_event_id()
        if job.is_terminal and last >= job.last_event_seq:
            await self._answer(204, b"")
        self.job_id = job.id
        try:
            await self.channel_layer.group_add(job_group(job.id), self.channel_name)
        except Exception:
            # The channel layer (Redis) is down: no live events to promise. The client
            # retries with backoff and replays from the database once it is back.
            logger.warning("stream refused, channel layer unavailable job=%s", job.id)
            await self._answer(503, b"Live updates are unavailable for a moment.\n")
        self.group = job_group(job.id)
        await self.send_headers(status=200, headers=SSE_HEADERS)
        self.open = True
        # Servers send the headers with the first body bytes: send some now, so a client that
        # resumes with nothing new to replay sees the stream open at once, not at the first ping.
        await self.send_body(encode_comment("open"), more_body=True)
        if last == 0:
            await self.send_body(
                encode_event(event="snapshot", data=job_as_dict(job)), more_body=True
            )
        self.last_sent = last
        if await self._replay():
            await self._finish()
        self._timers = [
            asyncio.create_task(self._tick()),
        ]
        LagWatch.current().add(self)
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

    async def _replay(self) -> bool:
        """Send every stored event after ``last_sent``; True when the terminal one was sent."""
        while True:
            events = await _events_after(self.job_id, self.last_sent)
            if not events:
                return False
            await self.send_body(b"".join(_frame(e) for e in events), more_body=True)
            self.last_sent = events[-1].seq
            if any(_is_terminal(e) for e in events):
                return True
            if len(events) < REPLAY_PAGE:
                return False

    # -- live ----------------------------------------------------------------------------

    async def job_event(self, message: dict) -> None:
        if not self.open:
            return
        event = message["event"]
        seq = event["seq"]
        if seq <= self.last_sent:
            return  # already sent (replayed, or delivered twice)
        if seq > self.last_sent + 1:
            # The layer dropped something: the database has it.
            if await self._replay():
                await self._finish()
            return
        await self.send_body(_frame(event), more_body=True)
        self.last_sent = seq
        if _is_terminal(event):
            await self._finish()

    def check_lag(self, newest: int) -> None:
        """Called by LagWatch: act when the database stays ahead of us across two checks."""
        if newest <= self.last_sent or not self.open:
            self._lag_mark = None
        elif self._lag_mark != self.last_sent:
            self._lag_mark = self.last_sent  # maybe just in flight; look again next time
        else:
            self._lag_mark = None
            self._timers.append(asyncio.create_task(self._ask_resync()))

    async def _ask_resync(self) -> None:
        try:
            # Through our own channel, so the replay is dispatched in turn with live events.
            await self.channel_layer.send(self.channel_name, {"type": "stream.resync"})
        except Exception:
            # The layer is down: the client must come back later and replay from the database.
            if self.open:
                self.open = False
                await self.send_body(
                    encode_event(event="reconnect", data={"after": self.last_sent})
                )

    async def stream_resync(self, message: dict) -> None:
        """We missed something: re-join the group (a restarted Redis forgets it) and replay."""
        if not self.open:
            return
        logger.info("stream resync job=%s after=%s", self.job_id, self.last_sent)
        with contextlib.suppress(Exception):
            await self.channel_layer.group_add(self.group, self.channel_name)
        if await self._replay():
            await self._finish()

    async def stream_close(self, message: dict) -> None:
        """Planned rotation: tell the client to come back at once, and close."""
        if self.open:
            await self.send_body(encode_event(event="reconnect", data={"after": self.last_sent}))
            self.open = False
        await self._cleanup()
        raise StopConsumer()

    async def _tick(self) -> None:
        """One timer per stream: heartbeats, then the planned rotation."""
        loop = asyncio.get_running_loop()
        close_at = loop.time() + settings.COPILOT_STREAM_MAX_SECONDS
        while self.open:
            wait = min(settings.COPILOT_HEARTBEAT_SECONDS, close_at - loop.time())
            await asyncio.sleep(max(wait, 0))
            if not self.open:
                return
            if loop.time() >= close_at:
                # Through our own channel, so the close is dispatched in turn with live events.
                await self.channel_layer.send(self.channel_name, {"type": "stream.close"})
                return
            await self.send_body(encode_comment("ping"), more_body=True)

    # -- closing -------------------------------------------------------------------------

    async def _finish(self) -> None:
        """After the terminal event: end the response and stop."""
        if self.open:
            await self.send_body(b"", more_body=False)
            self.open = False
        await self._cleanup()
        raise StopConsumer()

    async def http_disconnect(self, message: dict) -> None:
        self.open = False
        await self._cleanup()
        raise StopConsumer()

    async def _cleanup(self) -> None:
        if self.job_id is not None:
            LagWatch.current().discard(self)
        current = asyncio.current_task()
        for task in self._timers:
            if task is not current:
                task.cancel()
        self._timers = []
        if self.group is not None:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None
