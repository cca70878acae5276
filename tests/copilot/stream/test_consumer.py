"""The event stream, driven through the ASGI app: exact resume, live events, and cleanup."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from channels.layers import get_channel_layer
from django.core.asgi import get_asgi_application
from django.test import Client

from copilot.jobs import events, services, transitions
from copilot.jobs.messaging import event_message, job_group
from copilot.jobs.models import GenerationJob
from copilot.routing import build_application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_closer")]
Status = GenerationJob.Status
GOAL = "Every morning at 8am, fetch the top tech news and email a summary to me@example.com"


@pytest.fixture
def app(settings):
    settings.COPILOT_RUNNER_IN_PROCESS = False
    return build_application(get_asgi_application())


@sync_to_async
def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@sync_to_async
def job_with_events(user, *, progress: int = 2) -> GenerationJob:
    job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
    job = transitions.job_mark_submitting(job=job).job
    transitions.job_mark_running(job=job, upstream_job_id="up-1")
    for n in range(progress):
        events.job_progress(job_id=job.id, percent=10 * (n + 1), phase=f"phase {n}")
    job.refresh_from_db()
    return job


class Stream:
    """One HTTP request to the stream, read frame by frame."""

    def __init__(self, app, *, job_id, cookie: str | None, headers=(), query: str = "") -> None:
        raw_headers = [(b"host", b"testserver"), *headers]
        if cookie:
            raw_headers.append((b"cookie", f"sessionid={cookie}".encode()))
        path = f"/jobs/{job_id}/events"
        self.communicator = ApplicationCommunicator(
            app,
            {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "root_path": "",
                "query_string": query.encode(),
                "headers": raw_headers,
                "client": ("127.0.0.1", 50000),
                "server": ("testserver", 80),
            },
        )
        self.buffer = b""
        self.finished = False

    async def open(self) -> tuple[int, dict[bytes, bytes]]:
        await self.communicator.send_input({"type": "http.request", "body": b""})
        start = await self.communicator.receive_output(timeout=5)
        assert start["type"] == "http.response.start"
        return start["status"], dict(start["headers"])

    async def frame(self, timeout: float = 5) -> dict | None:
        """The next frame as {"id", "event", "data", "comment"}; None once the body ended."""
        while b"\n\n" not in self.buffer:
            if self.finished:
                return None
            message = await self.communicator.receive_output(timeout=timeout)
            assert message["type"] == "http.response.body"
            self.buffer += message.get("body", b"")
            self.finished = not message.get("more_body", False)
        raw, self.buffer = self.buffer.split(b"\n\n", 1)
        frame: dict = {}
        for line in raw.decode().split("\n"):
            field, _, value = line.partition(": ")
            frame["comment" if field == "" else field] = value
        if "data" in frame:
            frame["data"] = json.loads(frame["data"])
        return frame

    async def events(self, count: int) -> list[dict]:
        frames = []
        while len(frames) < count:
            frame = await self.frame()
            assert frame is not None, f"body ended after {frames}"
            if "comment" not in frame:
                frames.append(frame)
        return frames

    async def body_ended(self) -> bool:
        return (await self.frame()) is None

    async def disconnect(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(timeout=5)


async def test_anonymous_requests_get_401_and_no_stream(app, user):
    job = await job_with_events(user)
    stream = Stream(app, job_id=job.id, cookie=None)
    status, _ = await stream.open()
    assert status == 401
    assert await stream.body_ended()


async def test_someone_else_s_job_is_404_and_staff_may_follow_it(app, user, other_user, staff_user):
    job = await job_with_events(user)
    stream = Stream(app, job_id=job.id, cookie=await session_cookie(other_user))
    assert (await stream.open())[0] == 404
    stream = Stream(app, job_id=job.id, cookie=await session_cookie(staff_user))
    assert (await stream.open())[0] == 200
    await stream.disconnect()


async def test_a_fresh_connection_gets_a_snapshot_then_the_whole_log(app, user):
    job = await job_with_events(user, progress=2)
    stream = Stream(app, job_id=job.id, cookie=await session_cookie(user))
    status, headers = await stream.open()
    assert status == 200
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-store"
    assert headers[b"x-accel-buffering"] == b"no"
    assert b"content-encoding" not in headers
    snapshot, *events = await stream.events(1 + job.last_event_seq)
    assert snapshot["event"] == "snapshot" and "id" not in snapshot
    assert snapshot["data"]["id"] == str(job.id) and snapshot["data"]["status"] == "running"
    assert [int(e["id"]) for e in events] == list(range(1, job.last_event_seq + 1))
    assert [e["event"] for e in events] == ["status", "status", "status", "progress", "progress"]
    await stream.disconnect()


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_replays_only_what_the_client_lacks(app, user, how):
    job = await job_with_events(user, progress=3)  # seq 1..6
    headers = [(b"last-event-id", b"4")] if how == "header" else []
    query = "last_event_id=4" if how == "query" else ""
    stream = Stream(
        app, job_id=job.id, cookie=await session_cookie(user), headers=headers, query=query
    )
    await stream.open()
    events = await stream.events(2)
    assert [(e["id"], e["event"]) for e in events] == [("5", "progress"), ("6", "progress")]
    await stream.disconnect()


@pytest.mark.parametrize("value", [b"abc", b"-3", b"1.5", b"99999999999999999999999", "٣".encode()])
async def test_a_malformed_last_event_id_means_a_full_replay(app, user, value):
    job = await job_with_events(user, progress=1)
    stream = Stream(
        app, job_id=job.id, cookie=await session_cookie(user), headers=[(b"last-event-id", value)]
    )
    assert (await stream.open())[0] == 200
    frames = await stream.events(1 + job.last_event_seq)
    assert frames[0]["event"] == "snapshot"
    assert [f["id"] for f in frames[1:]] == [str(n) for n in range(1, job.last_event_seq + 1)]
    await stream.disconnect()


async def test_live_events_follow_the_replay_with_no_gap_or_duplicate(app, user):
    job = await job_with_events(user, progress=1)  # seq 1..4
    stream = Stream(
        app, job_id=job.id, cookie=await session_cookie(user), headers=[(b"last-event-id", b"2")]
    )
    await stream.open()
    assert [e["id"] for e in await stream.events(2)] == ["3", "4"]
    layer = get_channel_layer()
    # A duplicate of what was replayed is dropped...
    await layer.group_send(
        job_group(job.id),
        event_message(job_id=job.id, event={"seq": 4, "type": "progress", "data": {"percent": 10}}),
    )
    # ...live events arrive through the layer...
    await sync_to_async(events.job_progress)(job_id=job.id, percent=50, phase="wiring")  # seq 5
    assert [(e["id"], e["data"]["percent"]) for e in await stream.events(1)] == [("5", 50)]
    # ...and events the layer dropped are read back from the database, in order.
    await sync_to_async(events.event_append)(
        job_id=job.id, type="progress", data={"percent": 60, "phase": "x"}, publish=False
    )  # seq 6, never published
    await sync_to_async(events.job_progress)(job_id=job.id, percent=70, phase="y")  # seq 7
    assert [e["id"] for e in await stream.events(2)] == ["6", "7"]
    # The terminal event ends the response.
    await sync_to_async(transitions.job_complete)(
        job=job, result={"type": "vague_goal", "suggested_goal": "g"}
    )
    (last,) = await stream.events(1)
    assert (last["id"], last["event"], last["data"]["terminal"]) == ("8", "result", True)
    assert await stream.body_ended()


async def test_heartbeats_and_planned_rotation(app, user, settings):
    settings.COPILOT_HEARTBEAT_SECONDS = 0.1
    settings.COPILOT_STREAM_MAX_SECONDS = 0.45
    job = await job_with_events(user, progress=0)
    stream = Stream(
        app, job_id=job.id, cookie=await session_cookie(user), headers=[(b"last-event-id", b"3")]
    )
    await stream.open()
    assert (await stream.frame()) == {"comment": "open"}  # bytes at once, before any event
    pings = 0
    while True:
        frame = await stream.frame()
        if frame.get("comment") == "ping":
            pings += 1
            continue
        break
    assert pings >= 2
    assert frame["event"] == "reconnect" and "id" not in frame
    assert await stream.body_ended()


async def test_a_finished_job_the_client_has_fully_is_204(app, user):
    job = await job_with_events(user, progress=0)
    await sync_to_async(transitions.job_cancel_confirmed)(job=job, error_message="stop")
    cookie = await session_cookie(user)
    stream = Stream(app, job_id=job.id, cookie=cookie, headers=[(b"last-event-id", b"4")])
    assert (await stream.open())[0] == 204
    # One event behind: it gets that event, then the stream closes.
    stream = Stream(app, job_id=job.id, cookie=cookie, headers=[(b"last-event-id", b"3")])
    assert (await stream.open())[0] == 200
    (last,) = await stream.events(1)
    assert (last["id"], last["data"]["terminal"]) == ("4", True)
    assert await stream.body_ended()


async def test_streams_share_one_subscription_and_leave_nothing_behind(app, user):
    layer = get_channel_layer()
    job = await job_with_events(user, progress=0)
    before = layer.stats()  # the runner's channel holds job.run messages nobody reads here
    cookie = await session_cookie(user)
    streams = [
        Stream(app, job_id=job.id, cookie=cookie, headers=[(b"last-event-id", b"3")])
        for _ in range(5)
    ]
    for stream in streams:
        await stream.open()
    await asyncio.sleep(0.05)
    # Five streams of one job: one channel and one group membership for the process, not five.
    assert layer.stats() == {"channels": before["channels"] + 1, "groups": before["groups"] + 1}
    await sync_to_async(events.job_progress)(job_id=job.id, percent=5, phase="one")
    for stream in streams:
        assert [e["id"] for e in await stream.events(1)] == ["4"]
    tasks_open = len(asyncio.all_tasks())
    for stream in streams:
        await stream.disconnect()
    await asyncio.sleep(0.05)
    assert layer.stats() == before
    # Each stream's own tasks (its dispatcher, its receiver, its timer) and the hub's are gone.
    assert len(asyncio.all_tasks()) <= tasks_open - 5 * 3 - 2
