"""The Redis channel layer as the settings build it (real Redis at ``TEST_REDIS_URL``)."""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer

from copilot.broadcast import FANOUT_CHANNEL_PREFIX
from copilot.config import channel_layer_config

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
