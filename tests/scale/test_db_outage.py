"""The runner rides out its database going away, for real: a ``runworker agent-generator``
process, the reference Agent Generator, Redis, and the database cut in the middle of running
jobs. On PostgreSQL the outage proxy (tests/support/db_outage.py) drops every connection and
refuses new ones, as a restart or failover does; on SQLite a second connection holds the write
lock (``BEGIN IMMEDIATE``), past the busy timeout for the long outage.

Every job completes, with one upstream submit, a gap-free event log (seq 1..N) with no event
written twice, and the runner process is still up afterwards.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.db import connection

from copilot.config import SQLITE_BUSY_TIMEOUT_SECONDS
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.services import job_submit
from tests.support import portal
from tests.support.db_outage import database_cut
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

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

#: This module's own Redis database.
REDIS_DB = 5


@dataclass
class Setup:
    reference: LiveProcess
    runner: PortalProcess
    #: Cuts the database for the given seconds (blocking), as this database allows.
    outage: Callable[[float], None]
    #: Cuts it until the returned callable is called.
    begin_outage: Callable[[], Callable[[], None]]


@contextlib.contextmanager
def setup(*, job_seconds: float, **env_overrides: str) -> Iterator[Setup]:
    """The reference service, and one runworker whose database can be cut."""
    with contextlib.ExitStack() as stack:
        cut = stack.enter_context(database_cut(portal.test_database_url()))
        reference = stack.enter_context(reference_service(job_seconds=job_seconds))
        env = portal_env(
            DATABASE_URL=cut.url,
            REDIS_URL=redis_url(db=REDIS_DB),
            AGENT_GENERATOR_URL=reference.url,
            COPILOT_RUNNER_IN_PROCESS="false",
            **env_overrides,
        )
        runner = stack.enter_context(portal_process("runworker", "agent-generator", env=env))
        yield Setup(reference=reference, runner=runner, outage=cut.outage, begin_outage=cut.begin)


def submit(users, per_user: int) -> list[str]:
    return [
        str(job_submit(user=user, kind="decompose", payload={"description": GOAL}).id)
        for user in users
        for _ in range(per_user)
    ]


def expected_outages(seconds: float) -> int:
    """How many outages the runner logs: a lock shorter than the busy timeout is only a wait."""
    if connection.vendor == "sqlite" and seconds <= SQLITE_BUSY_TIMEOUT_SECONDS:
        return 0
    return 1


def assert_rode_it_out(setup: Setup, *, outages: int | range) -> str:
    """The runner is up, logged each outage once at each end, and no traceback."""
    assert setup.runner.process.poll() is None, setup.runner.output()
    output = setup.runner.output()
    expected = outages if isinstance(outages, range) else range(outages, outages + 1)
    assert output.count("database unavailable") in expected, output
    assert output.count("database back") == output.count("database unavailable"), output
    assert "Traceback" not in output, output
    assert "failed job=" not in output, output
    return output


@pytest.fixture
def users(django_user_model, settings):
    settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER = 10
    return [django_user_model.objects.create_user(username=f"u{n}") for n in range(2)]


@pytest.mark.alldb
@pytest.mark.parametrize(("outage_seconds", "job_seconds"), [(3, 7), (20, 8)])
def test_running_jobs_ride_out_a_database_outage(users, outage_seconds, job_seconds) -> None:
    with setup(job_seconds=job_seconds) as s:
        job_ids = submit(users, per_user=3)
        wait_for(lambda: all_in(job_ids, "running"), seconds=20, what="every job to run")
        time.sleep(1.0)  # a few progress events in
        seconds = sqlite_seconds(outage_seconds, long=outage_seconds >= 10)
        s.outage(seconds)
        # After a 20 s outage the jobs ended upstream meanwhile; a 3 s one ends before they do.
        wait_for(lambda: all_in(job_ids, "completed"), seconds=30, what="every job to complete")
        assert_exact_logs(job_ids)
        assert_one_submit_each(s.reference, job_ids)
        assert_rode_it_out(s, outages=expected_outages(seconds))


@pytest.mark.alldb
def test_an_outage_longer_than_the_lease_hands_the_jobs_on(users) -> None:
    """The lease runs out during the outage: the drives stop without writing, and the jobs
    (still leased to this runner, whose heartbeat is stale) are resumed once it is back."""
    job_seconds = 6 if connection.vendor == "postgresql" else 12
    with setup(job_seconds=job_seconds, COPILOT_RUNNER_DEAD_SECONDS="2") as s:
        job_ids = submit(users, per_user=2)
        wait_for(lambda: all_in(job_ids, "running"), seconds=20, what="every job to run")
        time.sleep(1.0)
        end = s.begin_outage()
        try:
            time.sleep(sqlite_seconds(8, long=True))
        finally:
            end()
        wait_for(lambda: all_in(job_ids, "completed"), seconds=30, what="every job to complete")
        assert_exact_logs(job_ids)
        assert_one_submit_each(s.reference, job_ids)
        output = assert_rode_it_out(s, outages=1)
        assert "runner heartbeat was stale" in output, output
        if connection.vendor == "postgresql":
            assert "for longer than the lease" in output, output
            assert output.count("runner resumes job=") >= 1, output
        # (On SQLite the runner's one database thread waits out the lock with each call
        # queued behind the first; the writes land, late, under the lease fence: no peer
        # took the jobs.)


@pytest.mark.postgres
def test_a_runner_cut_off_from_the_database_is_taken_over_by_one_that_is_not(users) -> None:
    """Only runner A is behind the proxy: B (direct) takes A's jobs once A's heartbeat is
    stale and completes them; A, cut off, writes nothing more, and lets go once it is back."""
    with setup(job_seconds=8, COPILOT_RUNNER_DEAD_SECONDS="2") as s:
        job_ids = submit(users, per_user=2)
        wait_for(lambda: all_in(job_ids, "running"), seconds=20, what="every job to run")
        owner_a = {j.lease_owner for j in GenerationJob.objects.filter(pk__in=job_ids)}
        assert len(owner_a) == 1 and f":{s.runner.pid}:" in owner_a.pop()
        end = s.begin_outage()
        try:
            env = portal_env(
                REDIS_URL=redis_url(db=REDIS_DB),
                AGENT_GENERATOR_URL=s.reference.url,
                COPILOT_RUNNER_IN_PROCESS="false",
                COPILOT_RUNNER_DEAD_SECONDS="2",
            )
            with portal_process("runworker", "agent-generator", env=env) as runner_b:
                wait_for(
                    lambda: all_in(job_ids, "completed"), seconds=30, what="B to complete them"
                )
                assert runner_b.process.poll() is None
                b_output = runner_b.output()
        finally:
            end()
        holders = set(
            JobEvent.objects.filter(job_id__in=job_ids, type="result").values_list(
                "job_id", flat=True
            )
        )
        assert len(holders) == len(job_ids)
        assert_exact_logs(job_ids)
        assert_one_submit_each(s.reference, job_ids)
        assert "Traceback" not in b_output, b_output
        # A is back on the database: it finds its leases gone and carries on, idle.
        wait_for(lambda: "database back" in s.runner.output(), seconds=15, what="A to reconnect")
        assert s.runner.process.poll() is None
        assert "Traceback" not in s.runner.output(), s.runner.output()


@pytest.mark.postgres
def test_an_idle_runner_rides_out_an_outage_and_takes_new_jobs_after(users) -> None:
    """Only its scans and heartbeat meet the outage: logged once at most (a beat may only
    wait, for a pooled connection, until it is over), and it carries on."""
    with setup(job_seconds=2) as s:
        wait_for(lambda: "runner started" in s.runner.output(), seconds=15, what="the runner")
        s.outage(3)
        job_ids = submit(users, per_user=2)
        wait_for(lambda: all_in(job_ids, "completed"), seconds=30, what="every job to complete")
        assert_exact_logs(job_ids)
        assert_one_submit_each(s.reference, job_ids)
        assert_rode_it_out(s, outages=range(2))
