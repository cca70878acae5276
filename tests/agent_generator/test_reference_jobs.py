"""Reference jobs: timeline and progress, long-poll, idempotency, cancel, expiry, stats."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from agent_generator.reference import ReferenceApp, ReferenceSettings, create_app
from agent_generator.reference.jobs import PHASES, Operation

DECOMPOSE = "/api/decompose-description"
GOAL = {"description": "Search the web for cat news and email it to cats@example.com"}


@pytest.fixture
async def make_client() -> AsyncIterator:
    """``make_client(**settings)`` -> (app, client) for settings other than the default."""
    clients: list[httpx.AsyncClient] = []

    def make(**settings) -> tuple[ReferenceApp, httpx.AsyncClient]:
        app = create_app(settings=ReferenceSettings(**settings))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r")
        clients.append(client)
        return app, client

    yield make
    for client in clients:
        await client.aclose()


async def submit(client: httpx.AsyncClient, *, faults: str = "", key: str | None = None) -> str:
    headers = {"X-Reference-Fault": faults} if faults else {}
    if key is not None:
        headers["Idempotency-Key"] = key
    answer = await client.post(DECOMPOSE, json=GOAL, headers=headers)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


async def stages_until_done(client: httpx.AsyncClient, job_id: str) -> list[tuple]:
    """Every answer of a long-poll loop, as (status, percent, phase)."""
    seen = []
    for _ in range(30):
        job = (await client.get(f"/api/jobs/{job_id}", params={"wait": 5})).json()
        seen.append((job["status"], job["progress"]["percent"], job["progress"]["phase"]))
        if job["status"] in {"completed", "failed", "cancelled"}:
            return seen
    raise AssertionError(seen)


async def test_job_runs_through_named_phases_to_completed(
    reference_client: httpx.AsyncClient,
) -> None:
    job_id = await submit(reference_client)
    seen = await stages_until_done(reference_client, job_id)
    running = [stage for stage in seen if stage[0] == "running"]
    assert [phase for _, _, phase in running] == list(PHASES[Operation.DECOMPOSE])
    assert seen[-1] == ("completed", 100, "done")
    percents = [percent for _, percent, _ in seen]
    assert percents == sorted(percents)
    assert len(set(percents)) == len(percents), "each answer of the long-poll is a change"
    assert all(status in {"queued", "running"} for status, _, _ in seen[:-1])


async def test_first_answer_is_queued(make_client) -> None:
    _, client = make_client(job_seconds=60)
    job = (await client.get(f"/api/jobs/{await submit(client)}")).json()
    assert job["status"] == "queued"
    assert job["progress"] == {"percent": 0, "phase": "waiting in the queue"}
    assert "result" not in job


@pytest.mark.parametrize("seconds", [0.2, 1.0])
async def test_number_of_changes_does_not_depend_on_job_length(
    reference_client: httpx.AsyncClient, seconds: float
) -> None:
    job_id = await submit(reference_client, faults=f"duration={seconds}")
    seen = await stages_until_done(reference_client, job_id)
    after_queue = [stage for stage in seen if stage[0] != "queued"]
    assert len(after_queue) == len(PHASES[Operation.DECOMPOSE]) + 1


async def test_generate_has_its_own_phases(run_job, reference_client) -> None:
    body = {"instructions": {"goal": "Search the web for cats and email them to a@b.com"}}
    submitted = await reference_client.post(
        "/api/generate-agent", json=body, headers={"X-Reference-Fault": "duration=0.3"}
    )
    seen = await stages_until_done(reference_client, submitted.json()["job_id"])
    phases = [phase for status, _, phase in seen if status == "running"]
    assert phases == list(PHASES[Operation.GENERATE])


async def test_long_poll_returns_when_the_stage_changes(make_client) -> None:
    _, client = make_client(job_seconds=60)
    job_id = await submit(client, faults="duration=2")  # queued for the first 0.1 s
    start = time.monotonic()
    job = (await client.get(f"/api/jobs/{job_id}", params={"wait": 10})).json()
    assert job["status"] == "running"
    assert time.monotonic() - start < 5, "held although the job changed"


async def test_long_poll_answers_a_terminal_job_at_once(reference_client) -> None:
    job_id = await submit(reference_client, faults="duration=0")
    start = time.monotonic()
    job = (await reference_client.get(f"/api/jobs/{job_id}", params={"wait": 5})).json()
    assert job["status"] == "completed"
    assert time.monotonic() - start < 2


async def test_long_poll_holds_until_wait_when_nothing_changes(make_client) -> None:
    _, client = make_client(job_seconds=60)
    job_id = await submit(client)
    before = (await client.get(f"/api/jobs/{job_id}")).json()
    start = time.monotonic()
    after = (await client.get(f"/api/jobs/{job_id}", params={"wait": "0.3"})).json()
    assert time.monotonic() - start >= 0.3
    assert after == before


async def test_long_poll_wait_is_capped(make_client) -> None:
    _, client = make_client(job_seconds=60, max_wait_seconds=0.2)
    job_id = await submit(client)
    before = (await client.get(f"/api/jobs/{job_id}")).json()
    start = time.monotonic()
    after = (await client.get(f"/api/jobs/{job_id}", params={"wait": 25})).json()
    assert time.monotonic() - start < 3
    assert after == before


async def test_without_long_poll_wait_is_ignored(make_client) -> None:
    _, client = make_client(job_seconds=60, long_poll=False)
    job_id = await submit(client)
    before = (await client.get(f"/api/jobs/{job_id}")).json()
    start = time.monotonic()
    after = (await client.get(f"/api/jobs/{job_id}", params={"wait": 20})).json()
    assert time.monotonic() - start < 3
    assert after == before


@pytest.mark.parametrize("wait", ["soon", "-1", "inf", "nan"])
async def test_bad_wait_is_400(reference_client, wait: str) -> None:
    job_id = await submit(reference_client)
    answer = await reference_client.get(f"/api/jobs/{job_id}", params={"wait": wait})
    assert answer.status_code == 400
    assert "wait" in answer.json()["errors"]


async def test_cancel_freezes_the_job(make_client) -> None:
    app, client = make_client(job_seconds=60)
    job_id = await submit(client)
    before = (await client.get(f"/api/jobs/{job_id}")).json()
    answer = await client.delete(f"/api/jobs/{job_id}")
    assert answer.status_code == 204
    assert answer.content == b""
    job = (await client.get(f"/api/jobs/{job_id}", params={"wait": 5})).json()
    assert job["status"] == "cancelled"
    assert job["progress"] == before["progress"]
    assert "result" not in job
    assert app.stats.deletes == 1


async def test_cancel_wakes_a_waiting_long_poll(make_client) -> None:
    _, client = make_client(job_seconds=60)
    job_id = await submit(client)
    await client.get(f"/api/jobs/{job_id}")
    poll = asyncio.create_task(client.get(f"/api/jobs/{job_id}", params={"wait": 20}))
    await asyncio.sleep(0.1)
    assert not poll.done()
    start = time.monotonic()
    assert (await client.delete(f"/api/jobs/{job_id}")).status_code == 204
    job = (await asyncio.wait_for(poll, timeout=5)).json()
    assert job["status"] == "cancelled"
    assert time.monotonic() - start < 3


async def test_cancel_after_the_end_keeps_the_outcome(reference_client) -> None:
    job_id = await submit(reference_client, faults="duration=0")
    assert (await reference_client.delete(f"/api/jobs/{job_id}")).status_code == 204
    job = (await reference_client.get(f"/api/jobs/{job_id}")).json()
    assert job["status"] == "completed"


async def test_idempotency_key_gives_the_same_job(reference_app, reference_client) -> None:
    first = await submit(reference_client, key="job-1:1")
    again = await submit(reference_client, key="job-1:1")
    other = await submit(reference_client, key="job-1:2")
    assert again == first
    assert other != first
    assert reference_app.stats.submits == 3
    assert reference_app.stats.jobs_created == 2
    assert reference_app.stats.submits_by_key == {"job-1:1": 2, "job-1:2": 1}


async def test_without_a_key_every_submit_creates_a_job(reference_app, reference_client) -> None:
    assert await submit(reference_client) != await submit(reference_client)
    assert reference_app.stats.jobs_created == 2
    assert reference_app.stats.submits_by_key == {}


async def test_ended_jobs_expire_after_the_ttl(make_client) -> None:
    app, client = make_client(job_seconds=0, ttl_seconds=0.2)
    job_id = await submit(client, key="k")
    assert (await client.get(f"/api/jobs/{job_id}")).status_code == 200
    await asyncio.sleep(0.4)
    answer = await client.get(f"/api/jobs/{job_id}")
    assert answer.status_code == 404
    assert (await client.delete(f"/api/jobs/{job_id}")).status_code == 404
    assert await submit(client, key="k") != job_id, "an expired job's key starts a new job"
    assert app.stats.jobs_created == 2


async def test_running_jobs_do_not_expire(make_client) -> None:
    _, client = make_client(job_seconds=1.0, ttl_seconds=0.05)
    job_id = await submit(client)
    await asyncio.sleep(0.3)
    job = await client.get(f"/api/jobs/{job_id}")
    assert job.status_code == 200
    assert job.json()["status"] == "running"


async def test_reset_forgets_jobs_and_zeroes_stats(reference_app, reference_client) -> None:
    stats = reference_app.stats
    job_id = await submit(reference_client, key="k")
    await reference_client.get(f"/api/jobs/{job_id}")
    reference_app.reset()
    assert stats is reference_app.stats
    assert (stats.submits, stats.jobs_created, stats.polls, stats.deletes) == (0, 0, 0, 0)
    assert stats.submits_by_key == {}
    assert (await reference_client.get(f"/api/jobs/{job_id}")).status_code == 404
    assert await submit(reference_client, key="k") != job_id


async def test_polls_are_counted(reference_app, reference_client) -> None:
    job_id = await submit(reference_client)
    for _ in range(3):
        await reference_client.get(f"/api/jobs/{job_id}")
    await reference_client.get("/api/jobs/unknown")
    assert reference_app.stats.polls == 4
