"""The event stream's limits: only GET, streams per user, slow readers, logins that end."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client

from copilot.config import ConfigError, load
from copilot.jobs import services, transitions
from copilot.stream.hub import StreamHub
from tests.copilot.stream.test_consumer import Stream, job_with_events, session_cookie
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_closer")]

HEARTBEAT = 0.3
MB = 1024 * 1024


@pytest.fixture
def app(settings):
    from django.core.asgi import get_asgi_application

    from copilot.routing import build_application

    settings.COPILOT_RUNNER_IN_PROCESS = False
    return build_application(get_asgi_application())


def open_stream(app, *, job_id, cookie, method: str = "GET", last: int = 0) -> Stream:
    headers = [(b"last-event-id", str(last).encode())] if last else []
    stream = Stream(app, job_id=job_id, cookie=cookie, headers=headers)
    stream.communicator.scope["method"] = method  # read when the app starts, on first input
    return stream


# -- the setting ---------------------------------------------------------------------------


def test_max_streams_per_user_defaults_to_20_and_reads_a_whole_number(tmp_path):
    assert load({"DEBUG": "true"}, base_dir=tmp_path).max_streams_per_user == 20
    env = {"DEBUG": "true", "COPILOT_MAX_STREAMS_PER_USER": " 5 "}
    assert load(env, base_dir=tmp_path).max_streams_per_user == 5


@pytest.mark.parametrize("value", ["0", "-3", "2.5", "many", "1e3"])
def test_a_bad_max_streams_per_user_is_one_line_naming_it(tmp_path, value):
    with pytest.raises(ConfigError) as caught:
        load({"DEBUG": "true", "COPILOT_MAX_STREAMS_PER_USER": value}, base_dir=tmp_path)
    message = str(caught.value)
    assert "COPILOT_MAX_STREAMS_PER_USER" in message and "\n" not in message


# -- only GET ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"])
async def test_anything_but_get_is_405_with_allow_get(app, user, method):
    job = await job_with_events(user)
    stream = open_stream(app, job_id=job.id, cookie=await session_cookie(user), method=method)
    status, headers = await stream.open()
    assert (status, headers[b"allow"]) == (405, b"GET")
    assert headers[b"content-type"].startswith(b"text/plain")
    assert await stream.body_ended()
    await stream.communicator.wait()  # the consumer is gone, holding nothing
    assert StreamHub.current().user_streams[user.pk] == 0


# -- streams per user ----------------------------------------------------------------------


async def test_the_21st_stream_of_a_user_is_429_until_one_closes(app, user, other_user, settings):
    assert settings.COPILOT_MAX_STREAMS_PER_USER == 20
    job = await job_with_events(user, progress=0)
    cookie = await session_cookie(user)
    streams = [open_stream(app, job_id=job.id, cookie=cookie, last=3) for _ in range(20)]
    for stream in streams:
        assert (await stream.open())[0] == 200

    refused = open_stream(app, job_id=job.id, cookie=cookie, last=3)
    status, headers = await refused.open()
    assert status == 429
    assert int(headers[b"retry-after"]) > 0
    assert b"Too many open streams" in (await refused.communicator.receive_output())["body"]

    # Another user is not affected.
    other_job = await job_with_events(other_user, progress=0)
    other = open_stream(app, job_id=other_job.id, cookie=await session_cookie(other_user), last=3)
    assert (await other.open())[0] == 200

    # Closing one of the 20 frees its slot.
    await streams.pop().disconnect()
    again = open_stream(app, job_id=job.id, cookie=cookie, last=3)
    assert (await again.open())[0] == 200
    assert (await open_stream(app, job_id=job.id, cookie=cookie, last=3).open())[0] == 429

    for stream in [*streams, other, again]:
        await stream.disconnect()
    assert StreamHub.current().user_streams == {}


async def test_answers_that_open_no_stream_hold_no_slot(app, user, other_user, settings):
    settings.COPILOT_MAX_STREAMS_PER_USER = 2
    job = await job_with_events(user, progress=0)
    await sync_to_async(transitions.job_cancel_confirmed)(job=job, error_message="stop")
    cookie = await session_cookie(user)
    someone_elses = await job_with_events(other_user, progress=0)
    for _ in range(3):
        assert (await open_stream(app, job_id=job.id, cookie=cookie, last=4).open())[0] == 204
        assert (await open_stream(app, job_id=someone_elses.id, cookie=cookie).open())[0] == 404
    # A stream that ends by itself (the job's end) gives its slot back too.
    ended = open_stream(app, job_id=job.id, cookie=cookie, last=3)
    assert (await ended.open())[0] == 200
    assert (await ended.events(1))[0]["data"]["terminal"] is True
    assert await ended.body_ended()
    live = await job_with_events(user, progress=0)
    streams = [open_stream(app, job_id=live.id, cookie=cookie, last=3) for _ in range(2)]
    assert [(await s.open())[0] for s in streams] == [200, 200]
    for stream in streams:
        await stream.disconnect()


# -- logins that end -----------------------------------------------------------------------


@sync_to_async
def logged_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def ends_within_a_heartbeat(stream: Stream, change) -> float:
    """Apply ``change``; the seconds until the stream's ``reconnect`` and the body's end."""
    assert (await stream.frame())["comment"] == "open"
    await sync_to_async(change)()
    started = time.monotonic()
    while True:
        frame = await stream.frame(timeout=5)
        assert frame is not None, "the body ended without a reconnect event"
        if frame.get("comment") == "ping":
            continue
        break
    elapsed = time.monotonic() - started
    assert frame["event"] == "reconnect"
    assert await stream.body_ended()
    return elapsed


@pytest.mark.alldb
async def test_a_logout_ends_an_open_stream_within_a_heartbeat(app, user, settings):
    settings.COPILOT_HEARTBEAT_SECONDS = HEARTBEAT
    settings.COPILOT_STREAM_MAX_SECONDS = 60
    job = await job_with_events(user, progress=0)
    browser, other_browser = await logged_in_client(user), await logged_in_client(user)
    key = browser.cookies["sessionid"].value
    stream = open_stream(app, job_id=job.id, cookie=key, last=3)
    other = open_stream(app, job_id=job.id, cookie=other_browser.cookies["sessionid"].value, last=3)
    assert (await stream.open())[0] == (await other.open())[0] == 200

    def log_out() -> None:
        assert browser.post("/accounts/logout/").status_code == 302
        assert not Session.objects.filter(session_key=key).exists()

    elapsed = await ends_within_a_heartbeat(stream, log_out)
    assert elapsed < HEARTBEAT + 0.5
    # The browser's reconnect now gets 401 (stream.js shows its login link); the user's
    # other session keeps its stream.
    assert (await open_stream(app, job_id=job.id, cookie=key, last=3).open())[0] == 401
    assert (await other.frame())["comment"] == "open"
    assert (await other.frame(timeout=HEARTBEAT * 4))["comment"] == "ping"
    await other.disconnect()


@pytest.mark.alldb
async def test_deactivating_a_user_ends_their_streams_within_a_heartbeat(app, user, settings):
    settings.COPILOT_HEARTBEAT_SECONDS = HEARTBEAT
    settings.COPILOT_STREAM_MAX_SECONDS = 60
    job = await job_with_events(user, progress=0)
    cookie = await session_cookie(user)
    stream = open_stream(app, job_id=job.id, cookie=cookie, last=3)
    assert (await stream.open())[0] == 200

    def deactivate() -> None:
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)

    elapsed = await ends_within_a_heartbeat(stream, deactivate)
    assert elapsed < HEARTBEAT + 0.5
    assert (await open_stream(app, job_id=job.id, cookie=cookie, last=3).open())[0] == 401


@pytest.mark.alldb  # the check's query (a UNION with a CAST) on both databases
async def test_the_login_check_is_one_query_for_every_stream(app, user, other_user, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from copilot.stream.access import logins_valid

    cookies = [await session_cookie(user) for _ in range(3)] + [await session_cookie(other_user)]

    def check():
        with CaptureQueriesContext(connection) as queries:
            valid = logins_valid(
                session_keys=[*cookies, "gone"], user_ids=[user.pk, other_user.pk, 999_999]
            )
        return valid, len(queries)

    valid, queries = await sync_to_async(check)()
    assert queries == 1
    assert valid.sessions == frozenset(cookies)
    assert valid.users == frozenset({user.pk, other_user.pk})
    assert not valid.allows(session_key="gone", user_id=user.pk)
    assert not valid.allows(session_key=cookies[0], user_id=999_999)
    assert valid.allows(session_key=cookies[0], user_id=user.pk)


# -- a slow reader, on a real Daphne ---------------------------------------------------------

SLOW_CLIENTS = 8
TCP_CLOSE = 7  # tcpi_state once the peer reset the connection


def result_mb() -> int:
    """Bigger than what the kernel may queue for one socket, so the server holds some of it."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
        return max(2, int(wmem.read().split()[2]) // MB + 1)


@sync_to_async
def big_finished_job(user, *, size_mb: int):
    """A completed job whose result (in the snapshot and in the result event) is ``size_mb``."""
    job = services.job_submit(user=user, kind="decompose", payload={"description": "big"})
    job = transitions.job_mark_submitting(job=job).job
    job = transitions.job_mark_running(job=job, upstream_job_id="up-1").job
    node = {"block": "send_email", "input": {"body": "x" * 1000}}
    nodes = [dict(node, id=f"n{i}") for i in range(size_mb * 1000)]
    result = {"type": "agent", "agent_json": {"name": "big", "nodes": nodes, "links": []}}
    transitions.job_complete(job=job, result=result, publish=False)
    return job


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def stream_socket(*, port: int, path: str, cookie: str) -> socket.socket:
    """A raw socket that has sent the stream's GET and read nothing yet (16 KiB SO_RCVBUF)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: sessionid={cookie}\r\n\r\n"
    sock.sendall(request.encode())
    return sock


def read_slowly(sock: socket.socket, *, bytes_per_second: int, seconds: float) -> int:
    """Read at about ``bytes_per_second`` for ``seconds``; the bytes read (-1: reset)."""
    total, started = 0, time.monotonic()
    with sock:
        while time.monotonic() - started < seconds:
            try:
                chunk = sock.recv(16 * 1024)
            except ConnectionResetError:
                return -1
            if not chunk:
                break
            total += len(chunk)
            time.sleep(len(chunk) / bytes_per_second)  # the client's pace, not a wait
    return total


def reset_by_peer(sock: socket.socket) -> bool:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
    return struct.unpack("B", info)[0] == TCP_CLOSE


@pytest.mark.slow
async def test_a_client_that_never_reads_is_dropped_and_its_memory_freed(user):
    size_mb = result_mb()
    job = await big_finished_job(user, size_mb=size_mb)
    cookie = await session_cookie(user)
    port = free_port()
    env = portal_env(COPILOT_HEARTBEAT_SECONDS=str(HEARTBEAT), COPILOT_STREAM_MAX_SECONDS="600")
    daphne = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot.asgi:application"]
    path = f"/jobs/{job.id}/events"
    with run_server(args=daphne, port=port, env=env, ready_path="/accounts/login/") as web:

        def read_everything() -> bytes:
            headers = {"Cookie": f"sessionid={cookie}"}
            with httpx.Client(timeout=30) as client:
                return client.get(f"{web.url}{path}", headers=headers).content

        # A reader gets the whole log through the paced replay (and warms the server up).
        for _ in range(2):
            body = await asyncio.to_thread(read_everything)
        assert len(body) > 2 * size_mb * MB
        assert body.startswith(b": open\n\nevent: snapshot\n")
        assert re.findall(rb"^id: (\d+)$", body, re.MULTILINE) == [b"1", b"2", b"3", b"4"]
        assert body.count(b"\nevent: result\n") == 1 and body.endswith(b"}\n\n")
        before = rss(web.pid)

        clients = [stream_socket(port=port, path=path, cookie=cookie) for _ in range(SLOW_CLIENTS)]
        deadline = time.monotonic() + 20 * HEARTBEAT + 5
        while not all(reset_by_peer(c) for c in clients) and time.monotonic() < deadline:
            await asyncio.sleep(HEARTBEAT / 2)
        dropped = sum(reset_by_peer(c) for c in clients)
        # Unbounded, each would pin its replay (twice the result) less what the kernel holds
        # (under one result), for good; here little more than the allocator keeps is left.
        bound = SLOW_CLIENTS * size_mb * MB // 2
        deadline = time.monotonic() + 5
        while (after := rss(web.pid)) - before >= bound:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(HEARTBEAT / 2)
        for client in clients:
            client.close()

        # A client that reads slowly takes bytes in every heartbeat and is not dropped,
        # although the server's buffer stays full for whole heartbeats: the kernel wakes the
        # server only once much of its queue is free, but the queue shrinks at each read
        # (16 KiB, three times a heartbeat). Judged by the server's buffer alone, it is dropped.
        slow = stream_socket(port=port, path=path, cookie=cookie)
        pace = 160 * 1024
        read = await asyncio.to_thread(
            read_slowly, slow, bytes_per_second=pace, seconds=12 * HEARTBEAT
        )
        output = web.output()

    assert dropped == SLOW_CLIENTS, output[-3000:]
    # Twisted told the streams from the event loop's own thread (Daphne's asyncio reactor).
    assert "off the event loop's thread" not in output
    held = [int(n) for n in re.findall(r"dropped, slow reader job=\S+ unsent=(\d+)", output)]
    assert len(held) == SLOW_CLIENTS
    # Each held more than the bound (the snapshot) and less than its whole replay.
    assert all(MB < n < 2 * size_mb * MB for n in held), held
    assert after - before < bound, (before, after)
    assert read > pace * 6 * HEARTBEAT, read  # not reset (-1), and it kept reading
