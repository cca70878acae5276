"""Takeover in seconds: runner heartbeats, the ``lease_owner`` fence, and the idle write rate."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.utils import timezone

from agent_generator.reference import ReferenceSettings, create_app
from copilot.config import ConfigError, load
from copilot.jobs import events, leases, services
from copilot.jobs.exceptions import LeaseLost
from copilot.jobs.models import GenerationJob, JobEvent, RunnerHeartbeat
from copilot.runner import drive as drive_module
from copilot.runner.runner import Runner
from copilot.runner.thread import RunnerThread
from tests.copilot.conftest import client_factory_for, running
from tests.copilot.runner.test_runner import GOAL, submit
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env, portal_process
from tests.support.waiting import wait_for

Status = GenerationJob.Status


def reference_server(*, job_seconds: float):
    port = free_port()
    args = ["-m", "agent_generator.reference", "--host", "127.0.0.1", "--port", str(port)]
    return run_server(args=[*args, "--job-seconds", str(job_seconds), "--expose-stats"], port=port)


def held_by(job: GenerationJob, pid: int) -> bool:
    return GenerationJob.objects.filter(
        pk=job.pk, status=Status.RUNNING, lease_owner__contains=f":{pid}:"
    ).exists()


def assert_one_clean_run(job: GenerationJob, stats: dict) -> None:
    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    assert stats["submits"] == 1 and stats["jobs_created"] == 1
    events = list(JobEvent.objects.filter(job=job).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(1 for e in events if e.data.get("status") == "submitting") == 1
    assert sum(1 for e in events if e.data.get("terminal")) == 1
    percents = [e.data["percent"] for e in events if e.type == "progress"]
    assert percents == sorted(percents)


# -- real processes, SIGKILL ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.alldb
@pytest.mark.parametrize("where", ["same-host", "other-host"])
@pytest.mark.django_db(transaction=True)
def test_a_peer_takes_over_a_sigkilled_runner_s_job_within_10_s(user, where):
    with reference_server(job_seconds=14) as ref:
        env = portal_env(AGENT_GENERATOR_URL=ref.url)  # the default dead interval
        with (
            portal_process("runworker", "agent-generator", env=env) as first,
            portal_process("runworker", "agent-generator", env=env) as second,
        ):
            for worker in (first, second):
                wait_for(
                    lambda w=worker: RunnerHeartbeat.objects.filter(pid=w.pid).exists(),
                    seconds=20,
                    what="both runners to beat",
                    process=worker,
                )
            job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
            wait_for(
                lambda: held_by(job, first.pid) or held_by(job, second.pid),
                seconds=20,
                what="a runner to submit the job",
            )
            dead, peer = (first, second) if held_by(job, first.pid) else (second, first)
            if where == "other-host":
                # As if the dead runner ran on another machine: only its heartbeat's age tells.
                RunnerHeartbeat.objects.filter(pid=dead.pid).update(host="another-host")
            dead.kill()
            killed = time.monotonic()
            wait_for(lambda: held_by(job, peer.pid), seconds=15, what="the takeover", process=peer)
            took = time.monotonic() - killed
            wait_for(
                lambda: GenerationJob.objects.get(pk=job.pk).is_terminal,
                seconds=30,
                what="the job to end",
                process=peer,
            )
            stats = httpx.get(f"{ref.url}/__stats").json()
    assert took < 10, took
    if where == "same-host":
        assert took < 3, took  # the dead pid is seen at the peer's next scan
    assert_one_clean_run(job, stats)


@pytest.mark.slow
@pytest.mark.alldb
@pytest.mark.django_db(transaction=True)
def test_a_restarted_runner_takes_over_its_predecessor_s_job_within_5_s_of_starting(user):
    with reference_server(job_seconds=12) as ref:
        env = portal_env(AGENT_GENERATOR_URL=ref.url)
        with portal_process("runworker", "agent-generator", env=env) as before:
            job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
            wait_for(
                lambda: held_by(job, before.pid),
                seconds=20,
                what="the runner to submit the job",
                process=before,
            )
            before.kill()
        started = time.monotonic()  # the predecessor's heartbeat is still fresh here
        with portal_process("runworker", "agent-generator", env=env) as after:
            wait_for(
                lambda: held_by(job, after.pid), seconds=15, what="the takeover", process=after
            )
            took = time.monotonic() - started
            wait_for(
                lambda: GenerationJob.objects.get(pk=job.pk).is_terminal,
                seconds=30,
                what="the job to end",
                process=after,
            )
            stats = httpx.get(f"{ref.url}/__stats").json()
    assert took < 5, took
    assert_one_clean_run(job, stats)


def web_server(*, env: dict[str, str]):
    port = free_port()
    args = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot.asgi:application"]
    return run_server(args=args, port=port, env=env, ready_path="/admin/login/")


@pytest.mark.slow
@pytest.mark.alldb
@pytest.mark.django_db(transaction=True)
def test_a_restarted_web_server_takes_over_its_embedded_runner_s_job_within_5_s(user):
    with reference_server(job_seconds=12) as ref:
        env = portal_env(AGENT_GENERATOR_URL=ref.url, COPILOT_RUNNER_IN_PROCESS="true")
        with web_server(env=env) as before:
            job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
            wait_for(lambda: held_by(job, before.pid), seconds=20, what="the server's runner")
            before.kill()
        started = time.monotonic()
        with web_server(env=env) as after:
            wait_for(lambda: held_by(job, after.pid), seconds=15, what="the takeover")
            took = time.monotonic() - started
            wait_for(
                lambda: GenerationJob.objects.get(pk=job.pk).is_terminal,
                seconds=30,
                what="the job to end",
            )
            stats = httpx.get(f"{ref.url}/__stats").json()
    assert took < 5, took
    assert_one_clean_run(job, stats)


# -- a slow runner: paused, taken over, resumed ------------------------------------------------


@pytest.mark.slow
@pytest.mark.alldb
@pytest.mark.django_db(transaction=True)
def test_a_paused_runner_whose_job_was_taken_over_writes_nothing_and_lets_go(
    user, settings, monkeypatch
):
    settings.COPILOT_RUNNER_DEAD_SECONDS = 1
    writes: list[tuple[asyncio.AbstractEventLoop, int]] = []
    publish = drive_module.event_publish

    async def recorded(*, job_id, event):  # which runner (event loop) wrote what
        writes.append((asyncio.get_running_loop(), event["seq"]))
        await publish(job_id=job_id, event=event)

    monkeypatch.setattr(drive_module, "event_publish", recorded)
    with reference_server(job_seconds=8) as ref:
        settings.AGENT_GENERATOR_URL = ref.url
        slow = RunnerThread(Runner(owner="slow-runner")).start()
        peer: RunnerThread | None = None
        resume = threading.Event()
        try:
            assert slow.runner.started.wait(10)
            job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
            wait_for(
                lambda: GenerationJob.objects.filter(
                    pk=job.pk, status=Status.RUNNING, lease_owner="slow-runner"
                ).exists(),
                seconds=10,
                what="the slow runner to submit the job",
            )
            # A long pause (GC, a stalled host): the runner's event loop runs nothing.
            paused = threading.Event()

            def pause() -> None:
                paused.set()
                resume.wait(30)

            assert slow.runner.loop is not None
            slow.runner.loop.call_soon_threadsafe(pause)
            assert paused.wait(5)
            peer = RunnerThread(Runner(owner="peer-runner")).start()
            wait_for(
                lambda: GenerationJob.objects.filter(pk=job.pk, lease_owner="peer-runner").exists(),
                seconds=10,
                what="the peer to take the job over",
            )
            taken_at = len(writes)
            resume.set()
            wait_for(
                lambda: job.pk not in slow.runner._held,
                seconds=5,
                what="the slow runner to let go",
            )
            wait_for(
                lambda: GenerationJob.objects.get(pk=job.pk).is_terminal,
                seconds=30,
                what="the peer to end the job",
            )
            stats = httpx.get(f"{ref.url}/__stats").json()
        finally:
            resume.set()
            slow.stop()
            if peer is not None:
                peer.stop()
    assert slow.runner.stale_beats >= 1  # it noticed its own heartbeat had gone stale
    after = [loop for loop, _ in writes[taken_at:]]
    assert slow.runner.loop not in after  # nothing written by the slow runner after
    assert after and set(after) == {peer.runner.loop}
    assert_one_clean_run(job, stats)


# -- idle cost -------------------------------------------------------------------------------


class WriteCounter:
    """An execute wrapper counting the write statements of one connection."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        if sql.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE", "WITH"}:
            self.writes.append(sql)
        return execute(sql, params, many, context)


def counter_install(counter: WriteCounter) -> None:
    connection.execute_wrappers.append(counter)


def counter_remove(counter: WriteCounter) -> None:
    connection.execute_wrappers.remove(counter)


@pytest.mark.slow
@pytest.mark.alldb
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("db_closer")
async def test_an_idle_runner_writes_at_most_once_a_second_whatever_it_holds(user, settings):
    settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER = 50
    # An hour-long upstream job reports its first phase minutes in: while measured, the jobs
    # change nothing, and every write is the runner's own upkeep.
    reference = create_app(settings=ReferenceSettings(job_seconds=3600))
    jobs = [await submit(user) for _ in range(20)]
    runner = Runner(client_factory=client_factory_for(reference), db_threads=1)
    counter = WriteCounter()
    async with running(runner, listen=False):
        await wait_async(lambda: len(runner._held) == len(jobs) and all_polled(jobs))
        await runner.db.call(None, counter_install, counter)  # its only database thread
        started = time.monotonic()
        await asyncio.sleep(5)  # the measured window
        await runner.db.call(None, counter_remove, counter)
        seconds = time.monotonic() - started
    assert len(runner._held) == 0  # (stopped: let go of all)
    heartbeats = [sql for sql in counter.writes if RunnerHeartbeat._meta.db_table in sql]
    assert counter.writes == heartbeats, counter.writes  # nothing per job
    assert 3 <= len(heartbeats) <= seconds + 1, (len(heartbeats), seconds)


async def wait_async(predicate, *, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await sync_to_async(predicate)():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


def all_polled(jobs) -> bool:
    """Every job's first progress logged (its first poll is over)."""
    ids = [j.pk for j in jobs]
    polled = JobEvent.objects.filter(job_id__in=ids, type=JobEvent.Type.PROGRESS)
    return polled.values("job_id").distinct().count() == len(ids)


# -- heartbeats and claims, one process ---------------------------------------------------------


def gone_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.alldb
@pytest.mark.django_db
def test_dead_peers_are_forgotten_and_live_ones_kept():
    now = timezone.now()
    here, me = leases.host_id(), os.getpid()
    long_ago = now - timedelta(seconds=settings.COPILOT_RUNNER_DEAD_SECONDS * 11)
    before = now - timedelta(days=1)
    rows = {
        "gone-pid-here": dict(host=here, pid=gone_pid()),
        "gone-pid-elsewhere": dict(host="another-host", pid=gone_pid()),
        "live-pid-here": dict(host=here, pid=os.getppid()),
        "my-pid-predecessor": dict(host=here, pid=me, started_at=before),
        "my-pid-in-process-peer": dict(host=here, pid=me, started_at=now),
        "long-silent": dict(host="another-host", pid=1, seen_at=long_ago),
    }
    for owner, fields in rows.items():
        RunnerHeartbeat.objects.create(owner=owner, **{"seen_at": now, **fields})
    assert leases.dead_peers_forget(owner="me") == 3
    assert set(RunnerHeartbeat.objects.values_list("owner", flat=True)) == {
        "gone-pid-elsewhere",  # only its age tells
        "live-pid-here",
        "my-pid-in-process-peer",
    }


@pytest.mark.alldb
@pytest.mark.django_db
def test_a_job_is_claimable_only_from_a_runner_without_a_fresh_heartbeat(user):
    job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
    RunnerHeartbeat.objects.create(owner="alive", seen_at=timezone.now())
    GenerationJob.objects.filter(pk=job.pk).update(lease_owner="alive")
    assert leases.jobs_claim(job_ids=[job.pk], owner="other") == []
    assert leases.jobs_claim_stale(owner="other", limit=10) == []
    stale = timezone.now() - timedelta(seconds=settings.COPILOT_RUNNER_DEAD_SECONDS + 1)
    RunnerHeartbeat.objects.filter(owner="alive").update(seen_at=stale)
    assert leases.jobs_claim_stale(owner="other", limit=10) == [job.pk]
    assert leases.heartbeat_beat(owner="other") is False  # its first beat: a new row
    assert leases.heartbeat_beat(owner="other") is True
    assert leases.jobs_claim(job_ids=[job.pk], owner="third") == []
    assert GenerationJob.objects.get(pk=job.pk).lease_owner == "other"
    # A write of the runner that lost the job is refused: the fence is lease_owner alone.
    with pytest.raises(LeaseLost):
        events.job_progress(job_id=job.pk, percent=1, phase="x", lease_owner="alive")


# -- the setting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [("5s", "is not a number"), ("0.1", "at least 0.5"), ("inf", "finite"), ("-1", "at least")],
)
def test_bad_runner_dead_seconds_are_refused(value, error, tmp_path):
    env = {"DEBUG": "true", "COPILOT_RUNNER_DEAD_SECONDS": value}
    with pytest.raises(ConfigError, match=f"COPILOT_RUNNER_DEAD_SECONDS.*{error}"):
        load(env, base_dir=tmp_path)


def test_runner_dead_seconds_defaults_to_5_and_lease_seconds_is_still_accepted(tmp_path):
    config = load({"DEBUG": "true", "COPILOT_LEASE_SECONDS": "60"}, base_dir=tmp_path)
    assert config.runner_dead_seconds == 5
    env = {"DEBUG": "true", "COPILOT_RUNNER_DEAD_SECONDS": "2.5"}
    assert load(env, base_dir=tmp_path).runner_dead_seconds == 2.5
