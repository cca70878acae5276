"""The stream hub: one channel-layer subscription per job per process, fanned out.

Per event loop, :class:`StreamHub` holds the open streams of each job, ONE group membership
per job on ONE channel of its own, and one receiver. Each event is encoded once and written
to that job's local streams, so a broadcast costs one layer message per process, not one per
stream (``bench/streams.py`` measures it).

Nothing depends on a channel-layer message arriving: once per heartbeat the hub compares, in
one query, every open stream with its job's newest ``seq``; a stream still behind at the next
check (a dropped message; a Redis restart that forgot the hub's membership) makes the hub
re-join the job's group and the stream replay what it missed from the database. In the same
beat, one more query asks which of the streams' sessions, API tokens and users still hold
(:mod:`copilot.stream.access`); a stream whose user logged out or was deactivated, or whose
token was deleted or expired, ends. While the database is away (a restart, a failover) both
checks are skipped, with one log line per outage (:class:`copilot.stream.outage.OutageNotice`):
a login that cannot be checked is not a login gone, so every stream stays open.

The hub also counts each user's open streams (:meth:`StreamHub.admit`), for
``COPILOT_MAX_STREAMS_PER_USER``. The count is per process, with no shared state: with N web
processes behind a balancer a user may hold up to N times the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections import Counter
from typing import Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from copilot.jobs.messaging import FANOUT_CHANNEL_PREFIX, job_group
from copilot.jobs.metrics import STREAMS_OPEN
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.stream.access import logins_valid
from copilot.stream.outage import OutageNotice
from copilot.stream.sse import encode_event

logger = logging.getLogger(__name__)

#: After a channel-layer error, the hub listens again this much later.
LISTEN_RETRY_SECONDS = 1.0


class HubStream(Protocol):
    """What the hub needs of a stream (:class:`copilot.stream.consumer.JobEventStream`)."""

    job_id: uuid.UUID
    session_key: str | None
    token_id: int | None
    user_id: int | None

    async def deliver(self, event: dict, frame: bytes) -> None: ...

    def check_lag(self, newest: int) -> None: ...

    def revoke(self) -> None: ...


def event_frame(event: JobEvent | dict) -> bytes:
    if isinstance(event, JobEvent):
        event = event.as_message()
    return encode_event(id=event["seq"], event=event["type"], data=event["data"])


_logins_valid = database_sync_to_async(logins_valid)


@database_sync_to_async
def _newest_seqs(job_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    return dict(GenerationJob.objects.filter(pk__in=job_ids).values_list("id", "last_event_seq"))


class StreamHub:
    """Per event loop: the streams of each job, one group membership per job, one receiver."""

    _by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.streams: dict[uuid.UUID, set[HubStream]] = {}
        self._receiver: asyncio.Task | None = None
        self._lag_check: asyncio.Task | None = None
        self._membership = asyncio.Lock()
        self.user_streams: Counter[int] = Counter()
        self._database = OutageNotice(who="stream hub")

    @classmethod
    def current(cls) -> StreamHub:
        loop = asyncio.get_running_loop()
        hub = cls._by_loop.get(loop)
        if hub is None:
            hub = cls._by_loop[loop] = cls()
        return hub

    def admit(self, user_id: int, *, limit: int) -> bool:
        """Count a new stream of ``user_id``, unless the user already has ``limit`` open."""
        if self.user_streams[user_id] >= limit:
            return False
        self.user_streams[user_id] += 1
        return True

    def release(self, user_id: int) -> None:
        """A stream counted by :meth:`admit` has ended."""
        self.user_streams[user_id] -= 1
        if self.user_streams[user_id] <= 0:
            del self.user_streams[user_id]

    async def join(self, stream: HubStream) -> None:
        """Add a stream; raises when the channel layer cannot take the job's membership."""
        # One join or leave at a time: each awaits the layer (Redis) between reading and
        # writing `streams` and `channel`, and two first streams of a job opening together
        # would otherwise each create the job's set, the second dropping the first stream.
        async with self._membership:
            if self.channel is None:
                self.channel = await self.layer.new_channel(prefix=FANOUT_CHANNEL_PREFIX)
            if stream.job_id not in self.streams:
                await self.layer.group_add(job_group(stream.job_id), self.channel)
                self.streams[stream.job_id] = set()
            self.streams[stream.job_id].add(stream)
            STREAMS_OPEN.inc()
            loop = asyncio.get_running_loop()
            if self._receiver is None or self._receiver.done():
                self._receiver = loop.create_task(
                    self._receive(self.channel), name="stream-hub-receive"
                )
            if self._lag_check is None or self._lag_check.done():
                self._lag_check = loop.create_task(self._check_lag(), name="stream-hub-lag")

    async def leave(self, stream: HubStream) -> None:
        async with self._membership:
            streams = self.streams.get(stream.job_id)
            if streams is None or stream not in streams:
                return
            streams.discard(stream)
            STREAMS_OPEN.dec()
            if not streams:
                del self.streams[stream.job_id]
                with contextlib.suppress(Exception):
                    await self.layer.group_discard(job_group(stream.job_id), self.channel)
            if not self.streams:
                self._stop()

    def _stop(self) -> None:
        """The last stream has left: the receiver and the lag check stop, the channel goes.

        A stream that ends on a live event (its job's terminal one) leaves from inside the
        receiver: that task is not cancelled (its next await would be cut short, or it would
        ask the layer for a cleared channel); it sees its channel gone and returns.
        """
        current = asyncio.current_task()
        for task in (self._receiver, self._lag_check):
            if task is not None and task is not current:
                task.cancel()  # a cancelled receive gives its channel back to the layer
        self._receiver = self._lag_check = None
        self.channel = None
        self._database.forget()

    async def rejoin(self, job_id: uuid.UUID) -> None:
        """Join the job's group again (idempotent): a restarted Redis forgets memberships."""
        if self.channel is not None and job_id in self.streams:
            await self.layer.group_add(job_group(job_id), self.channel)

    async def _receive(self, channel: str) -> None:
        """Hand each message on ``channel`` to its job's streams, while ``channel`` is the hub's."""
        while self.channel == channel:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("stream hub cannot receive: %s", exc)
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            if message.get("type") != "job.event":
                continue
            try:
                job_id = uuid.UUID(message["job_id"])
                event = message["event"]
                streams = list(self.streams.get(job_id, ()))
                frame = event_frame(event) if streams else b""  # encoded once for all its streams
            except (KeyError, TypeError, ValueError):
                logger.warning("stream hub ignored a malformed message")
                continue
            for stream in streams:
                try:
                    await stream.deliver(event, frame)
                except Exception:
                    logger.warning("stream delivery failed job=%s", job_id, exc_info=True)

    async def _check_lag(self) -> None:
        """Once per heartbeat: the streams' lag, then their logins (one query each)."""
        while True:
            await asyncio.sleep(settings.COPILOT_HEARTBEAT_SECONDS)
            if not self.streams:
                continue
            await self._check_seqs()
            await self._check_logins()

    async def _check_seqs(self) -> None:
        try:
            newest = await _newest_seqs(list(self.streams))
        except Exception as exc:
            self._database.failed("lag check", exc)
            return
        self._database.succeeded()
        for job_id, streams in list(self.streams.items()):
            for stream in list(streams):
                stream.check_lag(newest.get(job_id, 0))

    async def _check_logins(self) -> None:
        """End the streams whose session or token is gone or whose user is no longer active."""
        streams = [stream for streams in self.streams.values() for stream in streams]
        if not streams:
            return
        try:
            valid = await _logins_valid(
                session_keys=[s.session_key for s in streams if s.session_key],
                user_ids=[s.user_id for s in streams if s.user_id is not None],
                token_ids=[s.token_id for s in streams if s.token_id is not None],
            )
        except Exception as exc:
            self._database.failed("login check", exc)
            return  # unknown is not gone: the streams stay
        for stream in streams:
            if not valid.allows(
                session_key=stream.session_key, user_id=stream.user_id, token_id=stream.token_id
            ):
                stream.revoke()
