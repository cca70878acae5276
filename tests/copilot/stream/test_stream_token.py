"""The event stream with the JSON API's bearer tokens: who may follow, and when it ends."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.utils import timezone
from httpx_sse import connect_sse

from copilot.jobs import transitions
from copilot.jobs.models import ApiToken
from copilot.jobs.tokens import api_token_create
from copilot.stream.hub import StreamHub
from tests.copilot.stream.test_consumer import Stream, job_with_events, session_cookie
from tests.copilot.stream.test_limits import ends_within_a_heartbeat
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_closer")]

HEARTBEAT = 0.3
INVALID_TOKEN = b'Bearer error="invalid_token"'


@pytest.fixture
def app(settings):
    from django.core.asgi import get_asgi_application

    from copilot.routing import build_application

    settings.COPILOT_RUNNER_IN_PROCESS = False
    return build_application(get_asgi_application())


@sync_to_async
def token_for(user, *, expires_in: timedelta | None = None) -> tuple[ApiToken, str]:
    return api_token_create(user=user, name="script", expires_in=expires_in)


def bearer(key: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {key}".encode())


def token_stream(app, *, job_id, key: str, cookie: str | None = None, last: int = 0) -> Stream:
    headers = [bearer(key)] + ([(b"last-event-id", str(last).encode())] if last else [])
    return Stream(app, job_id=job_id, cookie=cookie, headers=headers)


async def refusal(stream: Stream) -> tuple[int, dict[bytes, bytes], bytes]:
    status, headers = await stream.open()
    body = (await stream.communicator.receive_output(timeout=5))["body"]
    await stream.communicator.wait(timeout=5)  # the consumer is gone
    return status, headers, body


async def test_a_valid_token_follows_its_user_s_job_and_notes_its_use(app, user):
    job = await job_with_events(user, progress=2)
    token, key = await token_for(user)
    stream = token_stream(app, job_id=job.id, key=key)
    status, headers = await stream.open()
    assert status == 200
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    snapshot, *events = await stream.events(1 + job.last_event_seq)
    assert snapshot["event"] == "snapshot" and snapshot["data"]["id"] == str(job.id)
    assert [int(e["id"]) for e in events] == list(range(1, job.last_event_seq + 1))
    await sync_to_async(transitions.job_complete)(
        job=job, result={"type": "vague_goal", "suggested_goal": "g"}
    )
    (last,) = await stream.events(1)
    assert (last["event"], last["data"]["terminal"]) == ("result", True)
    assert await stream.body_ended()
    await sync_to_async(token.refresh_from_db)()
    assert token.last_used_at is not None


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_scheme_is_case_insensitive(app, user, scheme):
    job = await job_with_events(user, progress=0)
    _token, key = await token_for(user)
    header = (b"authorization", f"{scheme} {key}".encode())
    stream = Stream(app, job_id=job.id, cookie=None, headers=[header])
    assert (await stream.open())[0] == 200
    await stream.disconnect()


@pytest.mark.parametrize("key", ["not-a-token", "", "x" * 5000])
async def test_an_unknown_token_is_401_invalid_token(app, user, key):
    job = await job_with_events(user, progress=0)
    status, headers, body = await refusal(token_stream(app, job_id=job.id, key=key))
    assert (status, headers[b"www-authenticate"]) == (401, INVALID_TOKEN)
    assert headers[b"content-type"].startswith(b"text/plain")
    assert body == b"Invalid token.\n"
    assert StreamHub.current().user_streams == {}


async def test_an_expired_token_is_401_saying_so(app, user):
    job = await job_with_events(user, progress=0)
    _token, key = await token_for(user, expires_in=timedelta(seconds=-1))
    status, headers, body = await refusal(token_stream(app, job_id=job.id, key=key))
    assert status == 401
    assert headers[b"www-authenticate"].startswith(INVALID_TOKEN + b", error_description=")
    assert body == b"Token expired; ask for a new one.\n"


async def test_an_inactive_user_s_token_is_401(app, user):
    job = await job_with_events(user, progress=0)
    _token, key = await token_for(user)
    await sync_to_async(get_user_model().objects.filter(pk=user.pk).update)(is_active=False)
    status, headers, _body = await refusal(token_stream(app, job_id=job.id, key=key))
    assert (status, headers[b"www-authenticate"]) == (401, INVALID_TOKEN)


@pytest.mark.parametrize("bad", ["unknown", "expired"])
async def test_a_bad_token_wins_over_a_valid_session_cookie(app, user, bad):
    job = await job_with_events(user, progress=0)
    cookie = await session_cookie(user)
    session_only = Stream(app, job_id=job.id, cookie=cookie)
    assert (await session_only.open())[0] == 200
    await session_only.disconnect()
    key = "not-a-token"
    if bad == "expired":
        _token, key = await token_for(user, expires_in=timedelta(seconds=-1))
    stream = token_stream(app, job_id=job.id, key=key, cookie=cookie)
    status, headers, _body = await refusal(stream)
    assert status == 401 and headers[b"www-authenticate"].startswith(INVALID_TOKEN)


async def test_another_scheme_leaves_the_session_to_decide(app, user):
    """A proxy's ``Basic`` credentials are not the portal's: the session cookie counts."""
    job = await job_with_events(user, progress=0)
    basic = (b"authorization", b"Basic dXNlcjpwYXNz")
    anonymous = Stream(app, job_id=job.id, cookie=None, headers=[basic])
    status, headers, body = await refusal(anonymous)
    assert (status, body) == (401, b"Log in to follow this job.\n")
    assert b"www-authenticate" not in headers
    logged_in = Stream(app, job_id=job.id, cookie=await session_cookie(user), headers=[basic])
    assert (await logged_in.open())[0] == 200
    await logged_in.disconnect()


async def test_someone_else_s_job_is_404_and_a_staff_token_follows_any(
    app, user, other_user, staff_user
):
    job = await job_with_events(user, progress=1)
    _token, other_key = await token_for(other_user)
    status, _headers, body = await refusal(token_stream(app, job_id=job.id, key=other_key))
    assert (status, body) == (404, b"Not found.\n")
    _token, staff_key = await token_for(staff_user)
    stream = token_stream(app, job_id=job.id, key=staff_key)
    assert (await stream.open())[0] == 200
    snapshot, *events = await stream.events(1 + job.last_event_seq)
    assert snapshot["event"] == "snapshot" and [e["id"] for e in events] == ["1", "2", "3", "4"]
    await stream.disconnect()


async def test_token_streams_count_against_the_user_s_limit(app, user, settings):
    settings.COPILOT_MAX_STREAMS_PER_USER = 1
    job = await job_with_events(user, progress=0)
    _token, key = await token_for(user)
    first = token_stream(app, job_id=job.id, key=key, last=3)
    assert (await first.open())[0] == 200
    second = Stream(app, job_id=job.id, cookie=await session_cookie(user))
    assert (await refusal(second))[0] == 429
    await first.disconnect()


# -- a token that goes ends its streams ----------------------------------------------------


@pytest.mark.alldb
@pytest.mark.parametrize("change", ["deleted", "expired", "user deactivated"])
async def test_a_token_that_goes_ends_its_stream_within_a_heartbeat(app, user, settings, change):
    settings.COPILOT_HEARTBEAT_SECONDS = HEARTBEAT
    settings.COPILOT_STREAM_MAX_SECONDS = 60
    job = await job_with_events(user, progress=0)
    token, key = await token_for(user)
    _other_token, other_key = await token_for(user)
    stream = token_stream(app, job_id=job.id, key=key, last=3)
    other = token_stream(app, job_id=job.id, key=other_key, last=3)
    assert (await stream.open())[0] == (await other.open())[0] == 200

    def revoke() -> None:
        tokens = ApiToken.objects.filter(pk=token.pk)
        if change == "deleted":
            tokens.delete()  # what the admin's delete does
        elif change == "expired":
            tokens.update(expires_at=timezone.now() - timedelta(seconds=1))
        else:
            get_user_model().objects.filter(pk=user.pk).update(is_active=False)

    elapsed = await ends_within_a_heartbeat(stream, revoke)
    assert elapsed < HEARTBEAT + 0.5
    # Its reconnect is refused; the user's other token keeps its stream, unless the user went.
    status, headers, _body = await refusal(token_stream(app, job_id=job.id, key=key, last=3))
    assert status == 401 and headers[b"www-authenticate"].startswith(INVALID_TOKEN)
    if change == "user deactivated":
        await ends_within_a_heartbeat(other, lambda: None)
    else:
        assert (await other.frame())["comment"] == "open"
        assert (await other.frame(timeout=HEARTBEAT * 4))["comment"] == "ping"
        await other.disconnect()


@pytest.mark.alldb  # the check's query (a UNION with a CAST) on both databases
async def test_the_login_check_is_still_one_query_with_tokens(user, other_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from copilot.stream.access import logins_valid

    cookie = await session_cookie(user)
    (live, _), (expired, _) = await token_for(user), await token_for(other_user)
    await sync_to_async(ApiToken.objects.filter(pk=expired.pk).update)(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    def check():
        with CaptureQueriesContext(connection) as queries:
            valid = logins_valid(
                session_keys=[cookie],
                user_ids=[user.pk, other_user.pk],
                token_ids=[live.pk, expired.pk, 999_999],
            )
        return valid, len(queries)

    valid, queries = await sync_to_async(check)()
    assert queries == 1
    assert (valid.sessions, valid.tokens) == (frozenset({cookie}), frozenset({live.pk}))
    assert valid.allows(session_key=None, user_id=user.pk, token_id=live.pk)
    assert not valid.allows(session_key=None, user_id=other_user.pk, token_id=expired.pk)
    # A token stream never falls back to a session, nor a session stream to a token.
    assert not valid.allows(session_key=cookie, user_id=user.pk, token_id=999_999)
    assert not valid.allows(session_key=None, user_id=user.pk)


# -- a real server and a real SSE client ---------------------------------------------------


def follow_with_httpx_sse(url: str, *, key: str, last: int = 0) -> list[tuple[str, str]]:
    """Read the stream with httpx-sse until it ends: [(id, event)] of the events read."""
    headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": str(last)}
    seen = []
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=10)) as client,
        connect_sse(client, "GET", url, headers=headers) as source,
    ):
        assert source.response.status_code == 200, source.response.text
        for sse in source.iter_sse():
            # httpx-sse 0.4 turns each `: ping` after an `id:` into an empty "message" event
            # (florimondmanca/httpx-sse#35); every event of the stream has data.
            if sse.data:
                seen.append((sse.id, sse.event))
    return seen


@pytest.mark.slow
async def test_httpx_sse_follows_a_job_on_a_live_server_with_a_token(user, other_user):
    job = await job_with_events(user, progress=1)  # seq 1..4
    _token, key = await token_for(user)
    _token, other_key = await token_for(other_user)
    port = free_port()
    env = portal_env(COPILOT_HEARTBEAT_SECONDS="0.2", COPILOT_STREAM_MAX_SECONDS="60")
    daphne = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot.asgi:application"]
    with run_server(args=daphne, port=port, env=env, ready_path="/accounts/login/") as web:
        url = f"{web.url}/jobs/{job.id}/events"
        reader = asyncio.create_task(asyncio.to_thread(follow_with_httpx_sse, url, key=key))
        await asyncio.sleep(1)
        # Written from this process: the server's channel layer never hears of it, and its
        # heartbeat's lag check reads it from the database.
        await sync_to_async(transitions.job_complete)(
            job=job, result={"type": "vague_goal", "suggested_goal": "g"}
        )
        started = time.monotonic()
        seen = await asyncio.wait_for(reader, 15)
        assert time.monotonic() - started < 5
        assert seen == [
            ("", "snapshot"),
            *[(str(n), e) for n, e in enumerate(["status"] * 3 + ["progress"], start=1)],
            ("5", "result"),
        ]
        # The client has it all: 204. Someone else's token: 404. A bad token: 401.
        async with httpx.AsyncClient(timeout=10) as client:
            done = {"Authorization": f"Bearer {key}", "Last-Event-ID": "5"}
            assert (await client.get(url, headers=done)).status_code == 204
            elses = {"Authorization": f"Bearer {other_key}"}
            assert (await client.get(url, headers=elses)).status_code == 404
            refused = await client.get(url, headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == INVALID_TOKEN.decode()
