"""Jobs survive a killed runner, racing runners and lost messages."""

from __future__ import annotations

import asyncio
import time
from io import StringIO

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from agent_generator import AgentGeneratorClient, PollPolicy
from agent_generator.reference import ReferenceSettings, create_app
from copilot.jobs import services
from copilot.jobs.models import GenerationJob, JobEvent, RunnerHeartbeat
from copilot.runner.runner import Runner
from tests.copilot.conftest import running
from tests.copilot.runner.test_runner import GOAL, reload, runner_for, submit, wait_until_ended
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env, portal_process
from tests.support.waiting import wait_for

Status = GenerationJob.Status


@pytest.mark.slow
@pytest.mark.alldb
@pytest.mark.django_db(transaction=True)
def test_a_killed_runner_s_job_is_taken_over_and_polled_not_resubmitted(user, settings):
    port = free_port()
    reference_args = ["-m", "agent_generator.reference", "--host", "127.0.0.1", "--port", str(port)]
    with run_server(
        args=[*reference_args, "--job-seconds", "4", "--expose-stats"], port=port
    ) as ref:
        env = portal_env(AGENT_GENERATOR_URL=ref.url)
        with portal_process("runworker", "agent-generator", env=env) as worker:
            job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
            running_job = wait_for(
                lambda: GenerationJob.objects.filter(
                    pk=job.pk, status=Status.RUNNING, lease_owner__contains=f":{worker.pid}:"
                ).first(),
                seconds=20,
                what="the runner process to submit the job",
                process=worker,
            )
            worker.kill()  # SIGKILL mid-job: no lease released, nothing cleaned up
        upstream = running_job.upstream_job_id
        assert upstream

        # The dead runner's heartbeat is still fresh: to a query, nobody may take the job yet.
        out = StringIO()
        call_command("resume_jobs", "--dry-run", stdout=out)
        assert out.getvalue() == "0 stale job(s)\n"

        wait_for(
            lambda: GenerationJob.objects.stale().filter(pk=job.pk).exists(),
            seconds=settings.COPILOT_RUNNER_DEAD_SECONDS + 3,
            what="the dead runner's heartbeat to go stale",
        )
        settings.AGENT_GENERATOR_URL = ref.url
        out = StringIO()
        call_command("resume_jobs", stdout=out)
        job.refresh_from_db()
        assert out.getvalue().splitlines() == [
            "took over 1 job(s); following them to their end",
            f"{job.id} completed",
            "resumed 1 job(s)",
        ]
        stats = httpx.get(f"{ref.url}/__stats").json()
    assert job.status == Status.COMPLETED
    assert job.upstream_job_id == upstream  # the same upstream job, polled to its end
    assert stats["submits"] == 1 and stats["jobs_created"] == 1
    seqs = list(JobEvent.objects.filter(job=job).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("db_closer")
async def test_two_runners_on_the_same_stale_jobs_never_drive_one_job_twice(user, settings):
    settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER = 20
    reference = create_app(settings=ReferenceSettings(job_seconds=0.5))
    jobs = [await submit(user) for _ in range(8)]  # no runner yet: all queued, unclaimed
    first, second = runner_for(reference), runner_for(reference)
    async with running(first, listen=False), running(second, listen=False):
        for job in jobs:
            await wait_until_ended(job)
    for job in jobs:
        job = await reload(job)
        assert job.status == Status.COMPLETED
        submitting = await sync_to_async(
            JobEvent.objects.filter(job=job, data__status="submitting").count
        )()
        assert submitting == 1
    assert reference.stats.submits_by_key == {f"{job.id}:1": 1 for job in jobs}
    assert first.wakes_received == second.wakes_received == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("db_closer")
async def test_a_lost_job_run_message_delays_a_job_by_one_scan_at_most(user):
    reference = create_app(settings=ReferenceSettings(job_seconds=0.2))
    runner = runner_for(reference)
    async with running(runner, listen=False):  # wakes go to the layer, where nobody listens
        await asyncio.sleep(0.1)  # the start-up scan is over; only the periodic one is left
        job = await submit(user)
        started = time.monotonic()
        job = await wait_until_ended(job)
        waited = time.monotonic() - started
    assert job.status == Status.COMPLETED
    assert runner.wakes_received == 0
    assert waited < runner.beat_seconds + 0.2 + 1.0  # one scan interval, the job, slack


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sigterm_releases_the_runner_s_leases_and_leaves_its_jobs_resumable(user, settings):
    port = free_port()
    reference = ["-m", "agent_generator.reference", "--host", "127.0.0.1", "--port", str(port)]
    with run_server(args=[*reference, "--job-seconds", "30", "--expose-stats"], port=port) as ref:
        env = portal_env(AGENT_GENERATOR_URL=ref.url, COPILOT_RUNNER_DEAD_SECONDS="60")
        with portal_process("runworker", "agent-generator", env=env) as worker:
            job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
            wait_for(
                lambda: (
                    GenerationJob.objects.filter(pk=job.pk, status=Status.RUNNING)
                    .exclude(lease_owner="")
                    .exists()
                ),
                seconds=20,
                what="the runner process to submit the job",
                process=worker,
            )
            worker.stop()  # SIGTERM
            assert worker.process.returncode == 0, worker.output()
        job.refresh_from_db()
        stats = httpx.get(f"{ref.url}/__stats").json()
    # Released at once (not after the 60 s dead interval), still running upstream, not
    # cancelled there; the runner's heartbeat is gone.
    assert (job.status, job.lease_owner, job.lease_expires_at) == (Status.RUNNING, "", None)
    assert job.upstream_job_id
    assert stats["deletes"] == 0
    assert GenerationJob.objects.stale().filter(pk=job.pk).exists()
    assert not RunnerHeartbeat.objects.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("faults", "error_type"),
    [("slow-poll=2", "timeout"), ("reset", "connection_error")],
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("db_closer")
async def test_network_faults_over_a_live_server_end_as_the_protocol_says(user, faults, error_type):
    port = free_port()
    reference = ["-m", "agent_generator.reference", "--host", "127.0.0.1", "--port", str(port)]
    args = [*reference, "--job-seconds", "1", "--faults", faults]
    policy = PollPolicy(interval=0.02, max_interval=0.05, max_consecutive_errors=2, budget=30)
    with run_server(args=args, port=port) as ref:

        def client() -> AgentGeneratorClient:
            return AgentGeneratorClient(base_url=ref.url, timeout=httpx.Timeout(0.5), policy=policy)

        runner = Runner(client_factory=client)
        async with running(runner):
            job = await wait_until_ended(await submit(user), timeout=30)
    assert (job.status, job.error_type) == (Status.FAILED, error_type)
