"""AgentGeneratorClient against the reference service under Daphne on 127.0.0.1.

Real sockets give what the in-process transport cannot: request timeouts (a slow submit
retried under its Idempotency-Key, a slow poll), dropped connections, a refused port.
The server is the module-scoped ``live_reference`` fixture (jobs of 0.6 s, counters at
``GET /__stats``); counters are compared before and after each test.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from agent_generator import AgentGeneratorClient, JobUpdate, Operation, PollPolicy
from agent_generator.exceptions import ConnectionFailed, JobCancelled, RequestTimeout
from agent_generator.results import AgentResult, Instructions
from tests.support.live import LiveProcess, free_port

pytestmark = pytest.mark.slow

POLICY = PollPolicy(interval=0.02, max_interval=0.1, max_wait=2, budget=20, cancel_timeout=2)
GOAL = (
    "Every weekday at 8am, search the web for the latest news about solar power, "
    "summarise the top 5 articles in bullet points and email the summary to me@example.com"
)


async def stats(live: LiveProcess) -> dict:
    async with httpx.AsyncClient(base_url=live.url) as http:
        return (await http.get("/__stats")).json()


async def test_decompose_then_generate_over_http(live_reference: LiveProcess) -> None:
    before = await stats(live_reference)
    updates: list[JobUpdate] = []

    async def on_update(update: JobUpdate) -> None:
        updates.append(update)

    async with AgentGeneratorClient(base_url=live_reference.url, policy=POLICY) as client:
        assert (await client.health()).healthy
        instructions = await client.decompose_goal(
            description=GOAL, idempotency_key="live-decompose", on_update=on_update
        )
        assert isinstance(instructions, Instructions)
        agent = await client.generate_agent(
            instructions=instructions, idempotency_key="live-generate"
        )
        assert isinstance(agent, AgentResult)
    after = await stats(live_reference)
    assert after["jobs_created"] - before["jobs_created"] == 2
    assert [u.status for u in updates if u.kind != "progress"] == [
        "queued",
        "running",
        "completed",
    ]
    # Long-polls over a real socket: two 0.6 s jobs, about one poll per stage.
    assert after["polls"] - before["polls"] <= 30


async def test_slow_submit_retried_under_the_same_key_gets_the_same_job(
    live_reference: LiveProcess,
) -> None:
    before = await stats(live_reference)
    key = "live-slow-submit:1"
    async with AgentGeneratorClient(
        base_url=live_reference.url, timeout=0.5, policy=POLICY
    ) as client:
        job_id = await client.submit(
            operation=Operation.DECOMPOSE,
            payload={"description": GOAL},
            idempotency_key=key,
            extra_headers={"X-Reference-Fault": "slow-submit=2"},
        )
        # The first attempt timed out after creating the job; the retry got that job.
        after = await stats(live_reference)
        assert after["submits_by_key"][key] == 2
        assert after["jobs_created"] - before["jobs_created"] == 1
        async with httpx.AsyncClient(base_url=live_reference.url) as http:
            again = await http.post(
                "/api/decompose-description",
                json={"description": GOAL},
                headers={"Idempotency-Key": key},
            )
        assert again.json()["job_id"] == job_id
        result = await client.run(
            operation=Operation.DECOMPOSE,
            payload={"description": GOAL},
            idempotency_key=key,
            upstream_job_id=job_id,
        )
        assert isinstance(result, Instructions)


async def test_slow_polls_beyond_the_timeout_end_as_timeout(live_reference: LiveProcess) -> None:
    policy = PollPolicy(interval=0.02, max_interval=0.05, max_consecutive_errors=3)
    before = await stats(live_reference)
    async with AgentGeneratorClient(
        base_url=live_reference.url, timeout=0.4, policy=policy
    ) as client:
        assert client.wait_cap == pytest.approx(0.2)
        with pytest.raises(RequestTimeout) as info:
            await client.decompose_goal(
                description=GOAL,
                idempotency_key="live-slow-poll",
                extra_headers={"X-Reference-Fault": "slow-poll=1.5"},
            )
    assert info.value.error_type == "timeout"
    assert isinstance(info.value.__cause__, httpx.TimeoutException)
    assert (await stats(live_reference))["polls"] - before["polls"] == 3


async def test_dropped_connections_end_as_connection_error(live_reference: LiveProcess) -> None:
    policy = PollPolicy(interval=0.02, max_interval=0.05, max_consecutive_errors=3)
    async with AgentGeneratorClient(base_url=live_reference.url, policy=policy) as client:
        with pytest.raises(ConnectionFailed) as info:
            await client.decompose_goal(
                description=GOAL,
                idempotency_key="live-reset",
                extra_headers={"X-Reference-Fault": "reset"},
            )
    assert info.value.error_type == "connection_error"
    assert isinstance(info.value.__cause__, httpx.TransportError)


async def test_cancel_event_deletes_the_job_over_http(live_reference: LiveProcess) -> None:
    cancel = asyncio.Event()

    async def on_update(update: JobUpdate) -> None:
        if update.status == "running":
            cancel.set()

    before = await stats(live_reference)
    async with AgentGeneratorClient(base_url=live_reference.url, policy=POLICY) as client:
        with pytest.raises(JobCancelled):
            await client.decompose_goal(
                description=GOAL,
                idempotency_key="live-cancel",
                cancel=cancel,
                on_update=on_update,
                extra_headers={"X-Reference-Fault": "duration=10"},
            )
    assert (await stats(live_reference))["deletes"] - before["deletes"] == 1


async def test_nothing_listening_is_connection_error() -> None:
    policy = PollPolicy(interval=0.01, max_interval=0.02, max_consecutive_errors=2)
    async with AgentGeneratorClient(
        base_url=f"http://127.0.0.1:{free_port()}", timeout=2, policy=policy
    ) as client:
        with pytest.raises(ConnectionFailed):
            await client.health()
        with pytest.raises(ConnectionFailed):
            await client.decompose_goal(description=GOAL, idempotency_key="nobody-home")
        assert await client.cancel(job_id="job-1") is False
