"""The runner drives jobs to exactly one end, against the reference service over HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from agent_generator.reference import ReferenceSettings, create_app
from copilot.jobs import services
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.runner.runner import Runner
from tests.copilot.conftest import FAST_POLICY, client_factory_for, running

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_closer")]
Status = GenerationJob.Status

GOAL = "Every morning at 8am, fetch the top tech news and email a summary to me@example.com"


@sync_to_async
def submit(user, *, kind="decompose", payload=None) -> GenerationJob:
    return services.job_submit(user=user, kind=kind, payload=payload or {"description": GOAL})


@sync_to_async
def reload(job: GenerationJob) -> GenerationJob:
    return GenerationJob.objects.get(pk=job.pk)


@sync_to_async
def events_of(job: GenerationJob) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job_id=job.pk).order_by("seq"))


async def wait_until_ended(job: GenerationJob, *, timeout: float = 15) -> GenerationJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await reload(job)
        if job.is_terminal:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job.id} still {job.status} after {timeout}s")


def runner_for(reference, **kwargs) -> Runner:
    policy = kwargs.pop("policy", FAST_POLICY)
    return Runner(client_factory=client_factory_for(reference, policy=policy), **kwargs)


@pytest.mark.alldb
async def test_a_job_completes_with_its_events_in_order(user, reference):
    async with running(runner_for(reference)):
        job = await wait_until_ended(await submit(user))
    assert job.status == Status.COMPLETED
    assert job.result["type"] in {"instructions", "clarifying_questions"}
    assert job.upstream_job_id and job.finished_at and not job.lease_owner
    events = await events_of(job)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.data.get("status") for e in events[:3]] == ["queued", "submitting", "running"]
    assert events[2].data["upstream_job_id"] == job.upstream_job_id
    assert any(e.type == "progress" for e in events)
    percents = [e.data["percent"] for e in events if e.type == "progress"]
    assert percents == sorted(percents)
    assert events[-1].type == "result" and events[-1].data["terminal"] is True
    assert sum(1 for e in events if e.data.get("terminal")) == 1
    assert reference.stats.submits == 1


@pytest.mark.parametrize(
    ("faults", "status", "error_type"),
    [
        ("fail=llm_timeout", Status.FAILED, "job_failed"),
        ("malformed", Status.FAILED, "invalid_response"),
        ("unknown-status", Status.FAILED, "invalid_response"),
        ("bad-result", Status.FAILED, "invalid_response"),
        ("bad-job-id", Status.FAILED, "invalid_response"),
        ("expire", Status.FAILED, "job_not_found"),
        ("poll-429=20,retry-after=0", Status.FAILED, "rate_limit"),
        ("poll-503=20", Status.FAILED, "service_unavailable"),
        ("poll-504=20", Status.FAILED, "timeout"),
        ("poll-503=2", Status.COMPLETED, ""),
        ("submit-503=2", Status.COMPLETED, ""),
        ("submit-429=2,retry-after=0", Status.COMPLETED, ""),
    ],
)
async def test_each_injected_fault_ends_as_the_protocol_says(user, faults, status, error_type):
    reference = create_app(settings=ReferenceSettings(job_seconds=0.3, faults=faults))
    async with running(runner_for(reference)):
        job = await wait_until_ended(await submit(user))
    assert (job.status, job.error_type) == (status, error_type)
    if status == Status.FAILED:
        assert job.error_message
        last = (await events_of(job))[-1]
        assert (last.type, last.data["error_type"], last.data["terminal"]) == (
            "error",
            error_type,
            True,
        )
    if faults == "fail=llm_timeout":
        assert (await events_of(job))[-1].data["upstream_error_type"] == "llm_timeout"


async def test_the_poll_budget_ends_a_job_as_timed_out(user, settings):
    settings.AGENT_GENERATOR_POLL_BUDGET = 0.5
    reference = create_app(settings=ReferenceSettings(job_seconds=30))
    async with running(runner_for(reference)):
        job = await wait_until_ended(await submit(user))
    assert (job.status, job.error_type) == (Status.TIMED_OUT, "poll_timeout")
    assert reference.stats.deletes == 1  # the upstream job was cancelled, not left running


async def test_cancel_sends_delete_and_ends_cancelled(user):
    reference = create_app(settings=ReferenceSettings(job_seconds=30))
    async with running(runner_for(reference)):
        job = await submit(user)
        while not (await reload(job)).upstream_job_id:
            await asyncio.sleep(0.02)
        await sync_to_async(services.job_cancel)(job_id=job.id, by=user)
        job = await wait_until_ended(job)
    assert (job.status, job.error_type) == (Status.CANCELLED, "cancelled")
    assert reference.stats.deletes == 1
    types = [e.type for e in await events_of(job)]
    assert "cancel_requested" in types and types[-1] == "status"


async def test_retry_starts_a_new_upstream_job_and_keeps_the_history(user, settings):
    reference = create_app(settings=ReferenceSettings(job_seconds=1.0))
    settings.AGENT_GENERATOR_POLL_BUDGET = 0.3  # attempt 1 runs out of time
    async with running(runner_for(reference)):
        job = await wait_until_ended(await submit(user))
        assert job.status == Status.TIMED_OUT
        first_upstream = job.upstream_job_id
        settings.AGENT_GENERATOR_POLL_BUDGET = 30
        await sync_to_async(services.job_retry)(job_id=job.id, by=user)
        job = await wait_until_ended(job)
    assert (job.status, job.attempt) == (Status.COMPLETED, 2)
    assert job.upstream_job_id and job.upstream_job_id != first_upstream
    events = await events_of(job)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    retry_at = next(i for i, e in enumerate(events) if e.type == "retry")
    assert events[retry_at - 1].data["status"] == "timed_out"  # attempt 1's history is kept
    assert events[retry_at].data["attempt"] == 2
    assert events[-1].type == "result"
    assert reference.stats.submits_by_key == {f"{job.id}:1": 1, f"{job.id}:2": 1}
