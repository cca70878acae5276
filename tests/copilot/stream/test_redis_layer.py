"""The Redis channel layer as the settings build it (real Redis at ``TEST_REDIS_URL``)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels_redis.core import RedisChannelLayer

from copilot.config import channel_layer_config
from copilot.jobs.messaging import FANOUT_CHANNEL_PREFIX, job_group
from copilot.stream.hub import StreamHub

pytestmark = pytest.mark.redis


async def test_a_receive_that_waits_past_the_blocking_pop_loses_nothing(redis_url):
    # channels-redis waits with BZPOPMIN for brpop_timeout (5 s); with redis-py 8's default
    # read timeout (also 5 s) the wait failed with "Timeout reading" and a message popped at
    # that moment was lost. The stream hub and runworker wait like this all day.
    layer = RedisChannelLayer(**channel_layer_config(redis_url=redis_url)["CONFIG"])
    channel = await layer.new_channel(prefix=FANOUT_CHANNEL_PREFIX)
    receiving = asyncio.ensure_future(layer.receive(channel))
    try:
        await asyncio.sleep(layer.brpop_timeout + 1.5)
        assert not receiving.done(), receiving.exception()
        await layer.send(channel, {"type": "job.event", "n": 1})
        assert await asyncio.wait_for(receiving, 5) == {"type": "job.event", "n": 1}
    finally:
        receiving.cancel()
        await layer.close_pools()


class _Stream:
    """What the hub needs of a stream: its job, and somewhere to put live events."""

    def __init__(self, job_id: uuid.UUID) -> None:
        self.job_id = job_id
        self.got: list[dict] = []

    async def deliver(self, event: dict, frame: bytes) -> None:
        self.got.append(event)


async def test_streams_joining_at_once_all_get_the_live_events(redis_url):
    # Every join awaits Redis (group_add) between looking at the hub's streams and adding
    # to them: before the hub serialised joins, the first streams of a job opening together
    # each made the job's set, and only the last one's survived (14 of 20 in bench/streams.py).
    hub = StreamHub()
    hub.layer = RedisChannelLayer(**channel_layer_config(redis_url=redis_url)["CONFIG"])
    job_id = uuid.uuid4()
    streams = [_Stream(job_id) for _ in range(20)]
    try:
        await asyncio.gather(*(hub.join(stream) for stream in streams))
        assert hub.streams[job_id] == set(streams)
        event = {"seq": 2, "type": "progress", "data": {"percent": 50}}
        await hub.layer.group_send(
            job_group(job_id), {"type": "job.event", "job_id": "not-a-uuid", "event": event}
        )
        await hub.layer.group_send(job_group(job_id), {"type": "job.event", "job_id": str(job_id)})
        message = {"type": "job.event", "job_id": str(job_id), "event": event}
        await hub.layer.group_send(job_group(job_id), message)
        for _ in range(100):
            if all(stream.got for stream in streams):
                break
            await asyncio.sleep(0.05)
        # (The two malformed messages before it were skipped, not fatal to the receiver.)
        assert [stream.got for stream in streams] == [[event]] * 20
    finally:
        await asyncio.gather(*(hub.leave(stream) for stream in streams))
        assert hub.streams == {} and hub.channel is None
        await hub.layer.close_pools()
