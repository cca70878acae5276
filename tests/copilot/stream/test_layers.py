"""The embedded channel layer: O(1) delivery, any thread may send, nothing left behind."""

from __future__ import annotations

import asyncio
import threading

import pytest
from channels.exceptions import ChannelFull

from copilot.stream.layers import LocalChannelLayer


async def test_send_receive_and_groups():
    layer = LocalChannelLayer()
    a, b = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("job.1", a)
    await layer.group_add("job.1", b)
    await layer.group_send("job.1", {"type": "job.event", "n": 1})
    assert await layer.receive(a) == {"type": "job.event", "n": 1}
    assert await layer.receive(b) == {"type": "job.event", "n": 1}
    await layer.group_discard("job.1", b)
    await layer.group_send("job.1", {"type": "job.event", "n": 2})
    assert (await layer.receive(a))["n"] == 2
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(b), 0.05)


async def test_a_sender_on_another_thread_wakes_the_receiver():
    layer = LocalChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("job.2", channel)
    receiving = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0.01)  # the receiver is now waiting on this loop

    def other_thread() -> None:
        asyncio.run(layer.group_send("job.2", {"type": "job.event", "from": "thread"}))

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert (await asyncio.wait_for(receiving, 2))["from"] == "thread"


async def test_expired_messages_are_dropped_and_capacity_is_enforced():
    layer = LocalChannelLayer(expiry=0.05, capacity=2)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "x", "n": 1})
    await layer.send(channel, {"type": "x", "n": 2})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "x", "n": 3})
    await asyncio.sleep(0.1)
    await layer.send(channel, {"type": "x", "n": 4})  # the expired two made room
    assert (await layer.receive(channel))["n"] == 4


async def test_a_reader_that_goes_away_leaves_no_channel_or_membership():
    layer = LocalChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("job.3", channel)
    task = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert layer.stats() == {"channels": 0, "groups": 0}
