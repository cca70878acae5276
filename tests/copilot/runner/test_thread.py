"""A runner in a thread of its own (a web process, ``submit_job --wait``): its loop, its
wake-ups on the runner channel, and its stop at interpreter exit."""

from __future__ import annotations

import time

import pytest

from copilot.jobs import services
from copilot.jobs.models import GenerationJob, RunnerHeartbeat
from copilot.runner.runner import Runner
from copilot.runner.thread import RunnerThread
from tests.copilot.conftest import client_factory_for
from tests.copilot.runner.test_runner_recovery import GOAL
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env, portal_process
from tests.support.waiting import wait_for

Status = GenerationJob.Status


@pytest.mark.django_db(transaction=True)
def test_the_runner_thread_runs_on_uvloop_and_stops_with_its_leases_released(settings):
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed on this platform")
    settings.AGENT_GENERATOR_URL = "http://127.0.0.1:9"  # never reached: no job is queued
    thread = RunnerThread(Runner()).start()
    try:
        assert thread.runner.first_scan.wait(timeout=10), "the runner did not scan"
        assert isinstance(thread.runner.loop, uvloop.Loop)
    finally:
        assert thread.stop(), "the runner thread did not end"
    assert thread.runner.stopped.is_set()


@pytest.mark.django_db(transaction=True)
def test_a_submitted_job_wakes_the_thread_s_runner_through_the_runner_channel(user, reference):
    # A 60 s lease scans every 30 s: after the start-up scan only a job.run can start the job.
    runner = Runner(client_factory=client_factory_for(reference))
    thread = RunnerThread(runner).start()
    try:
        assert runner.first_scan.wait(timeout=10)
        job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
        wait_for(
            lambda: GenerationJob.objects.get(pk=job.pk).is_terminal,
            seconds=10,
            what="the woken runner to finish the job",
        )
    finally:
        assert thread.stop()
    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    assert runner.wakes_received == 1
    assert runner.first_claimed == []  # not found by a scan


EXIT_WHILE_HOLDING = """
import time
from copilot.jobs.models import GenerationJob
from copilot.runner.thread import RunnerThread

RunnerThread().start()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    if GenerationJob.objects.filter(status="running").exclude(lease_owner="").exists():
        print("holding the job; exiting", flush=True)
        break
    time.sleep(0.1)
"""


@pytest.mark.slow
@pytest.mark.alldb
@pytest.mark.django_db(transaction=True)
def test_a_process_that_exits_releases_its_thread_runner_s_leases(user):
    port = free_port()
    reference = ["-m", "agent_generator.reference", "--host", "127.0.0.1", "--port", str(port)]
    with run_server(args=[*reference, "--job-seconds", "30"], port=port) as ref:
        job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
        env = portal_env(AGENT_GENERATOR_URL=ref.url, COPILOT_RUNNER_DEAD_SECONDS="60")
        with portal_process("shell", "-c", EXIT_WHILE_HOLDING, env=env) as shell:
            started = time.monotonic()
            shell.process.wait(40)
            output = shell.output()
        assert shell.process.returncode == 0, output
        assert "holding the job; exiting" in output, output
        job.refresh_from_db()
    # Released by the exit handler at once, not after the 60 s dead interval; still running
    # upstream; the runner's heartbeat row is gone.
    assert (job.status, job.lease_owner, job.lease_expires_at) == (Status.RUNNING, "", None)
    assert not RunnerHeartbeat.objects.exists()
    assert time.monotonic() - started < 30
    assert GenerationJob.objects.stale().filter(pk=job.pk).exists()
