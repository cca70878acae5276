"""A database outage seen from the whole portal at once, for real: the reference Agent
Generator, one Daphne web process and one ``runworker agent-generator`` process, Redis as the
channel layer, and the database cut in the middle of running jobs. On PostgreSQL both
processes reach it through the same outage proxy (tests/support/db_outage.py), which drops
every connection and refuses new ones, as a restart or failover does; on SQLite a connection
of the test's own holds the shared file's write lock, past the busy timeout for the long
outage.

The jobs are submitted through the API with a bearer token; each is followed by a client
thread (tests/support/event_follower.py) that reconnects with ``Last-Event-ID`` whenever its
connection ends early (the streams rotate every few seconds here, so some reconnects fall in
the outage) and retries after a ``503``. While the database is away, a page and the API are
asked a few times: each answer is a ``503`` with ``Retry-After``, or a success when that
request could do without the database (or waited it out), never a ``500``.

Afterwards: every job completed, with one upstream submit; each job's event log is seq 1..N;
what each client received is exactly that log (same ids in order, same data, nothing twice,
nothing missing); both processes are still up and neither logged a traceback or an ERROR.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from django.db import connection
from django.test import Client

from copilot.jobs.db_errors import RETRY_AFTER_SECONDS
from copilot.jobs.models import JobEvent
from copilot.jobs.tokens import api_token_create
from tests.support import portal
from tests.support.db_outage import database_cut
from tests.support.event_follower import EventFollower
from tests.support.live import LiveProcess
from tests.support.outage_scenario import (
    GOAL,
    all_in,
    assert_exact_logs,
    assert_one_submit_each,
    redis_url,
    reference_service,
    sqlite_seconds,
)
from tests.support.portal import PortalProcess, portal_env, portal_process
from tests.support.waiting import wait_for
from tests.support.web_outage import loud_lines, web_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.alldb,
    pytest.mark.django_db(transaction=True),
]

JOBS = 4
#: Streams end with ``reconnect`` this often, so clients resume mid-job, some in the outage.
STREAM_MAX_SECONDS = "4"


#: This module's own Redis database.
REDIS_DB = 12


@dataclass
class Portal:
    reference: LiveProcess
    web: LiveProcess
    runner: PortalProcess
    #: Cuts the database (for both processes) until the returned callable is called.
    begin_outage: Callable[[], Callable[[], None]]


@contextlib.contextmanager
def running_portal(*, job_seconds: float) -> Iterator[Portal]:
    """The reference service, a web process and a runner, on one database that can be cut."""
    with contextlib.ExitStack() as stack:
        cut = stack.enter_context(database_cut(portal.test_database_url()))
        reference = stack.enter_context(reference_service(job_seconds=job_seconds))
        shared = {"REDIS_URL": redis_url(db=REDIS_DB), "AGENT_GENERATOR_URL": reference.url}
        runner = stack.enter_context(
            portal_process(
                "runworker",
                "agent-generator",
                env=portal_env(DATABASE_URL=cut.url, COPILOT_RUNNER_IN_PROCESS="false", **shared),
            )
        )
        web = stack.enter_context(
            web_server(
                database_url=cut.url,
                COPILOT_HEARTBEAT_SECONDS="1",
                COPILOT_STREAM_MAX_SECONDS=STREAM_MAX_SECONDS,
                COPILOT_MAX_ACTIVE_JOBS_PER_USER=str(JOBS),
                **shared,
            )
        )
        yield Portal(reference=reference, web=web, runner=runner, begin_outage=cut.begin)


@dataclass
class Login:
    cookie: str
    bearer: str

    def session(self) -> dict[str, str]:
        return {"Cookie": f"sessionid={self.cookie}"}

    def token(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer}"}


@pytest.fixture
def login(django_user_model) -> Login:
    user = django_user_model.objects.create_user(username="alice")
    client = Client()
    client.force_login(user)
    _, key = api_token_create(user=user)
    return Login(cookie=client.cookies["sessionid"].value, bearer=key)


def submit_jobs(web: LiveProcess, login: Login) -> list[str]:
    body = {"kind": "decompose", "description": GOAL}
    with httpx.Client(base_url=web.url, headers=login.token(), timeout=15) as http:
        answers = [http.post("/api/jobs/", json=body) for _ in range(JOBS)]
    assert [a.status_code for a in answers] == [201] * JOBS, [a.text for a in answers]
    return [a.json()["id"] for a in answers]


def follow(web: LiveProcess, login: Login, job_ids: list[str]) -> list[EventFollower]:
    """One client per job: half with the session (a browser), half with the token (a script)."""
    followers = [
        EventFollower(
            url=f"{web.url}/jobs/{job_id}/events",
            headers=login.session() if n % 2 == 0 else login.token(),
        )
        for n, job_id in enumerate(job_ids)
    ]
    for follower in followers:
        follower.start()
    return followers


def _probe(url: str, headers: dict[str, str]) -> tuple[str, int, str | None]:
    try:
        response = httpx.get(url, headers=headers, timeout=45)
    except httpx.HTTPError as exc:
        return url, -1, repr(exc)
    return url, response.status_code, response.headers.get("retry-after")


def cut_and_probe(
    s: Portal, login: Login, *, seconds: float, probe_at: tuple[float, ...]
) -> list[tuple[str, int, str | None]]:
    """The database away for ``seconds``; at each of ``probe_at`` (seconds into the outage)
    the job list page and the API are asked, each answer taken whenever it comes."""
    probes: list[Future] = []
    with ThreadPoolExecutor(2 * len(probe_at)) as pool:
        end = s.begin_outage()
        start = time.monotonic()
        try:
            for offset in probe_at:
                time.sleep(max(0.0, start + offset - time.monotonic()))
                probes.append(pool.submit(_probe, f"{s.web.url}/jobs/", login.session()))
                probes.append(pool.submit(_probe, f"{s.web.url}/api/jobs/", login.token()))
            time.sleep(max(0.0, start + seconds - time.monotonic()))
        finally:
            end()
        return [probe.result() for probe in probes]


def stored_log(job_id: str) -> list[tuple[int, str, object]]:
    return [
        (e.seq, e.type, e.data)
        for e in JobEvent.objects.filter(job_id=uuid.UUID(job_id)).order_by("seq")
    ]


def assert_clients_got_the_logs(followers: list[EventFollower], job_ids: list[str]) -> None:
    for follower, job_id in zip(followers, job_ids, strict=True):
        assert follower.error is None and follower.finished, vars(follower)
        assert set(follower.statuses) <= {200, 204, 503}, follower.statuses
        log = stored_log(job_id)
        assert [seq for seq, _, _ in follower.received] == [seq for seq, _, _ in log], job_id
        assert follower.received == log, job_id


@pytest.mark.parametrize(("outage_seconds", "job_seconds"), [(3, 7), (20, 8)])
def test_a_database_outage_mid_job_loses_nothing_anywhere(
    login, outage_seconds, job_seconds
) -> None:
    long = outage_seconds >= 10
    seconds = sqlite_seconds(outage_seconds, long=long)
    probe_at = (1.0, 6.0, 12.0) if long else (0.3, 1.5)
    with running_portal(job_seconds=job_seconds) as s:
        job_ids = submit_jobs(s.web, login)
        followers = follow(s.web, login, job_ids)
        wait_for(lambda: all_in(job_ids, "running"), seconds=20, what="every job to run")
        time.sleep(1.0)  # a few progress events in, each followed live
        answers = cut_and_probe(s, login, seconds=seconds, probe_at=probe_at)
        wait_for(lambda: all_in(job_ids, "completed"), seconds=40, what="every job to complete")
        for follower in followers:
            follower.join(30)
        assert s.web.poll() is None, s.web.output()
        assert s.runner.process.poll() is None, s.runner.output()
        web_output, runner_output = s.web.output(), s.runner.output()
        assert_one_submit_each(s.reference, job_ids)
    assert loud_lines(web_output) == [], web_output
    assert loud_lines(runner_output) == [], runner_output
    for url, status, retry_after in answers:
        assert status in (200, 503), (url, status, retry_after)
        if status == 503:
            assert retry_after == str(RETRY_AFTER_SECONDS), (url, retry_after)
    if connection.vendor == "postgresql" and long:
        # Asked well past the pool's wait (5 s): the database was away for them.
        assert any(status == 503 for _, status, _ in answers), answers
    assert_exact_logs(job_ids)
    assert_clients_got_the_logs(followers, job_ids)
    # The streams rotated while the jobs ran: each client resumed with Last-Event-ID.
    assert all(f.connections >= 2 for f in followers), [f.statuses for f in followers]
