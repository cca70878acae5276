"""The stream hub's receiver: it stops cleanly when the hub's last stream leaves."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels_redis.core import RedisChannelLayer
from django.core.asgi import get_asgi_application

from copilot.config import channel_layer_config
from copilot.jobs import transitions
from copilot.jobs.messaging import event_message, job_group
from copilot.routing import build_application
from copilot.stream.hub import StreamHub
from copilot.stream.layers import LocalChannelLayer
from tests.copilot.stream.test_consumer import Stream, job_with_events, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_closer")]


class _LeavingStream:
    """Leaves the hub on its first event, from inside the hub's receiver (as a stream does on
    a live terminal event)."""

    def __init__(self, hub: StreamHub, job_id: uuid.UUID) -> None:
        self.hub = hub
        self.job_id = job_id
        self.session_key = None
        self.token_id = None
        self.user_id = None
        self.got: list[dict] = []

    async def deliver(self, event: dict, frame: bytes) -> None:
        self.got.append(event)
        await self.hub.leave(self)

    def check_lag(self, newest: int) -> None:
        pass

    def revoke(self) -> None:
        pass


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
async def layer(request):
    if request.param == "local":
        yield LocalChannelLayer()
        return
    url = request.getfixturevalue("redis_url")
    layer = RedisChannelLayer(**channel_layer_config(redis_url=url)["CONFIG"])
    yield layer
    await layer.close_pools()


async def test_the_receiver_stops_when_the_last_stream_leaves_from_inside_it(layer, caplog):
    caplog.set_level(logging.DEBUG, logger="copilot.stream.hub")
    hub = StreamHub()
    hub.layer = layer
    job_id = uuid.uuid4()
    streams = [_LeavingStream(hub, job_id) for _ in range(2)]
    for stream in streams:
        await hub.join(stream)
    receiver = hub._receiver
    assert receiver is not None
    event = {"seq": 4, "type": "result", "data": {"terminal": True}}
    await layer.group_send(job_group(job_id), event_message(job_id=job_id, event=event))
    for _ in range(100):
        if receiver.done():
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # a receive on the cleared channel would have failed by now
    assert [stream.got for stream in streams] == [[event]] * 2
    assert receiver.done()
    assert hub.channel is None and hub._receiver is None and not hub.streams
    assert hub_warnings(caplog) == []
    # The hub serves the next stream on a channel of its own, with a receiver of its own.
    late = _LeavingStream(hub, job_id)
    await hub.join(late)
    assert hub.channel is not None and hub._receiver is not None
    await layer.group_send(job_group(job_id), event_message(job_id=job_id, event=event))
    for _ in range(100):
        if late.got:
            break
        await asyncio.sleep(0.02)
    assert late.got == [event]
    assert hub_warnings(caplog) == []


@pytest.fixture
def app(settings):
    settings.COPILOT_RUNNER_IN_PROCESS = False
    return build_application(get_asgi_application())


def hub_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "copilot.stream.hub" and r.levelno >= logging.WARNING
    ]


async def test_a_live_terminal_event_ends_the_last_stream_and_the_receiver_quietly(
    app, user, caplog
):
    # The terminal event reaches the streams through the hub's receiver, so the last stream
    # leaves the hub from inside that receiver: it must stop, not receive on a cleared channel.
    caplog.set_level(logging.DEBUG, logger="copilot.stream.hub")
    job = await job_with_events(user, progress=0)  # seq 1..3
    cookie = await session_cookie(user)
    streams = [
        Stream(app, job_id=job.id, cookie=cookie, headers=[(b"last-event-id", b"3")])
        for _ in range(2)
    ]
    for stream in streams:
        assert (await stream.open())[0] == 200
    hub = StreamHub.current()
    receiver = hub._receiver
    assert receiver is not None
    await sync_to_async(transitions.job_complete)(
        job=job, result={"type": "vague_goal", "suggested_goal": "g"}
    )
    for stream in streams:
        (last,) = await stream.events(1)
        assert (last["id"], last["data"]["terminal"]) == ("4", True)
        assert await stream.body_ended()
    await asyncio.sleep(0.2)  # past a receive on a cleared channel, had there been one
    assert receiver.done()
    assert hub.channel is None and hub._receiver is None and not hub.streams
    assert hub_warnings(caplog) == []


async def test_streams_opened_and_closed_in_turn_leave_no_warning(app, user, caplog, settings):
    settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER = 10
    caplog.set_level(logging.DEBUG, logger="copilot.stream.hub")
    cookie = await session_cookie(user)
    for _ in range(3):
        job = await job_with_events(user, progress=0)
        stream = Stream(app, job_id=job.id, cookie=cookie, headers=[(b"last-event-id", b"3")])
        assert (await stream.open())[0] == 200
        await stream.disconnect()
        job = await job_with_events(user, progress=0)
        stream = Stream(app, job_id=job.id, cookie=cookie, headers=[(b"last-event-id", b"3")])
        assert (await stream.open())[0] == 200
        await sync_to_async(transitions.job_cancel_confirmed)(job=job, error_message="stop")
        (last,) = await stream.events(1)
        assert last["data"]["terminal"] is True
        assert await stream.body_ended()
    await asyncio.sleep(0.2)
    hub = StreamHub.current()
    assert hub.channel is None and hub._receiver is None and not hub.streams
    assert hub_warnings(caplog) == []
