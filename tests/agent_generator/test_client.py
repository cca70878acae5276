"""AgentGeneratorClient against the reference service, in-process over ``httpx.ASGITransport``.

Every operation and every result type the reference can produce (from real goal text),
the updates ``run()`` reports, the backoff, and the lifecycle rules: resume, cancel
(event and task), detach, budget. Faults are in ``test_client_faults.py``; the live
server in ``test_client_live.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from agent_generator import AgentGeneratorClient, JobUpdate, Operation, PollPolicy
from agent_generator.exceptions import Detached, JobCancelled, PollTimeout
from agent_generator.reference import ReferenceApp, ReferenceSettings, create_app
from agent_generator.results import (
    AgentResult,
    ClarifyingQuestions,
    Instructions,
    UnachievableGoal,
    VagueGoal,
)

FAST = PollPolicy(interval=0.02, max_interval=0.1, budget=10, max_wait=0.1, cancel_timeout=1)

GOALS = {
    Instructions: (
        "Every weekday at 8am, search the web for the latest news about solar power, "
        "summarise the top 5 articles in bullet points and email the summary to me@example.com"
    ),
    ClarifyingQuestions: "Every morning search the web for news about rust and email me a summary",
    UnachievableGoal: "Predict the winning lottery numbers for next week and email them to me",
    VagueGoal: "make it good",
}


@dataclass
class Entry:
    """One request seen by ``Recording``: what was asked, what came back, and when."""

    method: str
    path: str
    wait: float | None
    status_code: int
    body: Any
    started: float
    ended: float


class Recording(httpx.AsyncBaseTransport):
    """Wraps the real ASGITransport and records every request with its timing."""

    def __init__(self, app: ReferenceApp) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.log: list[Entry] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        wait = request.url.params.get("wait")
        try:
            body = httpx.Response(200, content=content).json()
        except ValueError:
            body = None
        self.log.append(
            Entry(
                method=request.method,
                path=request.url.path,
                wait=float(wait) if wait is not None else None,
                status_code=response.status_code,
                body=body,
                started=started,
                ended=time.monotonic(),
            )
        )
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    def polls(self) -> list[Entry]:
        return [entry for entry in self.log if entry.method == "GET"]


@pytest.fixture
def service() -> Iterator[ReferenceApp]:
    app = create_app(settings=ReferenceSettings(job_seconds=0.3))
    yield app
    app.reset()


@pytest.fixture
def recording(service: ReferenceApp) -> Recording:
    return Recording(service)


@pytest.fixture
async def client(recording: Recording) -> AsyncIterator[AgentGeneratorClient]:
    async with AgentGeneratorClient(
        base_url="http://reference.test", transport=recording, policy=FAST
    ) as client:
        yield client


async def decompose(client: AgentGeneratorClient, goal: str, **kwargs: Any) -> Any:
    return await client.decompose_goal(description=goal, idempotency_key=goal[:40], **kwargs)


async def test_health_and_blocks(client: AgentGeneratorClient) -> None:
    health = await client.health()
    assert health.healthy and health.blocks_loaded
    blocks = await client.get_blocks()
    names = {block.name for block in blocks}
    assert {"Web search", "Send email", "Summarise text"} <= names
    assert all(block.id and block.data["id"] == block.id for block in blocks)


@pytest.mark.parametrize("expected", list(GOALS))
async def test_decompose_returns_each_result_type(
    client: AgentGeneratorClient, expected: type
) -> None:
    result = await decompose(client, GOALS[expected])
    assert isinstance(result, expected)
    stored = result.as_dict()
    assert stored["type"] == expected.type


async def test_decompose_instructions_name_blocks(client: AgentGeneratorClient) -> None:
    result = await decompose(client, GOALS[Instructions])
    assert [step.block_name for step in result.steps] == [
        "Schedule",
        "Web search",
        "Summarise text",
        "Send email",
    ]
    questions = await decompose(client, GOALS[ClarifyingQuestions])
    assert [q.keyword for q in questions.questions] == ["recipient_email"]


async def test_generate_update_and_customize(client: AgentGeneratorClient) -> None:
    instructions = await decompose(client, GOALS[Instructions])
    agent = await client.generate_agent(instructions=instructions, idempotency_key="gen")
    assert isinstance(agent, AgentResult)
    blocks = [node["block_id"] for node in agent.agent_json["nodes"]]
    assert len(blocks) == 4
    assert agent.as_dict() == {"type": "agent", "agent_json": agent.agent_json}

    updated = await client.update_agent(
        update_request="add a step to translate the summary into French",
        current_agent_json=agent.agent_json,
        idempotency_key="upd",
    )
    assert isinstance(updated, AgentResult)
    assert len(updated.agent_json["nodes"]) == 5
    assert updated.agent_json["version"] == agent.agent_json["version"] + 1

    unclear = await client.update_agent(
        update_request="make it sparkle like a unicorn",
        current_agent_json=agent.agent_json,
        idempotency_key="upd-2",
    )
    assert isinstance(unclear, ClarifyingQuestions)
    assert unclear.questions[0].keyword == "change_request"

    customized = await client.customize_template(
        template_agent_json=agent.agent_json,
        modification_request="remove the email step",
        idempotency_key="cus",
    )
    assert isinstance(customized, AgentResult)
    assert len(customized.agent_json["nodes"]) == 3
    assert customized.agent_json["id"] != agent.agent_json["id"]

    unclear = await client.customize_template(
        template_agent_json=agent.agent_json,
        modification_request="make it sparkle like a unicorn",
        idempotency_key="cus-2",
    )
    assert isinstance(unclear, ClarifyingQuestions)


async def test_operations_hit_their_submit_paths(
    client: AgentGeneratorClient, recording: Recording
) -> None:
    agent = await client.generate_agent(
        instructions={"goal": GOALS[Instructions]}, idempotency_key="g", library_agents=[]
    )
    await client.update_agent(
        update_request="remove the email step",
        current_agent_json=agent.agent_json,
        idempotency_key="u",
    )
    await client.customize_template(
        template_agent_json=agent.agent_json,
        modification_request="remove the email step",
        idempotency_key="c",
    )
    await decompose(client, GOALS[VagueGoal])
    posts = [entry.path for entry in recording.log if entry.method == "POST"]
    assert posts == [
        "/api/generate-agent",
        "/api/update-agent",
        "/api/template-modification",
        "/api/decompose-description",
    ]


async def test_updates_are_reported_once_each_and_submitted_comes_first(
    client: AgentGeneratorClient, service: ReferenceApp
) -> None:
    updates: list[tuple[JobUpdate, int]] = []

    async def on_update(update: JobUpdate) -> None:
        updates.append((update, service.stats.polls))

    await decompose(
        client,
        GOALS[Instructions],
        on_update=on_update,
        extra_headers={"X-Reference-Fault": "duration=1.2"},  # phases of ~0.3 s
    )
    first, polls_before_first = updates[0]
    assert first.kind == "submitted" and first.status == "queued"
    assert polls_before_first == 0
    seen = [update for update, _ in updates]
    assert all(update.job_id == first.job_id for update in seen)
    # Each change reported once per kind; progress updates alone see every progress change.
    assert len(set(seen)) == len(seen)
    assert [u.status for u in seen if u.kind == "status"] == ["running", "completed"]
    progress = [(u.percent, u.phase) for u in seen if u.kind == "progress"]
    assert all(a != b for a, b in itertools.pairwise(progress))
    assert progress == sorted(progress, key=lambda item: item[0])
    assert progress[-1] == (100, "done")
    completed = [u for u in seen if u.status == "completed"]
    assert [u.kind for u in completed] == ["status", "progress"]
    # Long-poll wakes on every stage: no decompose phase is missed.
    phases = {"reading the goal", "matching blocks", "ordering steps", "checking inputs", "done"}
    assert phases <= {phase for _, phase in progress}
    # Far fewer polls than a fixed 20 ms poller would need (60): long-poll holds them.
    assert service.stats.polls <= 30


async def test_interval_doubles_while_status_is_unchanged_and_resets_on_change() -> None:
    # No long-poll, no jitter: the waits asked are exactly the planned intervals.
    recording = Recording(create_app(settings=ReferenceSettings(long_poll=False)))
    policy = PollPolicy(interval=0.02, max_interval=0.16, max_wait=1, jitter=0, budget=10)
    async with AgentGeneratorClient(
        base_url="http://reference.test", transport=recording, policy=policy
    ) as client:
        # queued for the first 5 % (1 s), then running.
        detach = asyncio.Event()
        running = asyncio.Event()

        async def on_update(update: JobUpdate) -> None:
            if update.status == "running":
                running.set()

        task = asyncio.create_task(
            decompose(
                client,
                GOALS[Instructions],
                detach=detach,
                on_update=on_update,
                extra_headers={"X-Reference-Fault": "duration=20"},
            )
        )
        await running.wait()
        await asyncio.sleep(0.3)
        detach.set()
        with pytest.raises(Detached):
            await task
    polls = recording.polls()
    queued = [entry.wait for entry in polls if entry.body["status"] == "queued"]
    running = [entry.wait for entry in polls if entry.body["status"] == "running"]
    # First sight of progress is no change of the job: doubling from the start, to the cap.
    assert queued[:5] == [0.02, 0.04, 0.08, 0.16, 0.16]
    assert set(queued[5:]) <= {0.16}
    # The answer that showed "running" was asked with 0.16; the next one starts over.
    assert running[:3] == [0.16, 0.02, 0.04]
    # After an answer with no change, the rest of the interval is slept (the service
    # answers at once): the next poll never comes sooner than the wait asked.
    unchanged = 0
    for previous, current, following in zip(polls, polls[1:], polls[2:], strict=False):
        if previous.body == current.body:
            unchanged += 1
            assert following.started - current.started >= current.wait * 0.95
    assert unchanged >= 5


async def test_a_change_is_polled_again_at_once_when_the_service_holds_polls(
    recording: Recording,
) -> None:
    # Interval = wait = 0.6 s: a poll right after a change comes far sooner than that.
    policy = PollPolicy(interval=0.6, max_interval=0.6, max_wait=0.6, jitter=0, budget=10)
    async with AgentGeneratorClient(
        base_url="http://reference.test", transport=recording, policy=policy
    ) as client:
        await decompose(
            client, GOALS[Instructions], extra_headers={"X-Reference-Fault": "duration=1.5"}
        )
    polls = recording.polls()
    changes = [
        (answer, following)
        for previous, answer, following in zip(polls, polls[1:], polls[2:], strict=False)
        if answer.body != previous.body
    ]
    assert len(changes) >= 3
    for answer, following in changes:
        assert following.started - answer.ended < 0.3
        assert following.wait == 0.6


async def test_without_holds_a_change_waits_the_interval_instead() -> None:
    service = create_app(settings=ReferenceSettings(long_poll=False))
    recording = Recording(service)
    policy = PollPolicy(interval=0.1, max_interval=0.1, jitter=0, budget=10)
    async with AgentGeneratorClient(
        base_url="http://reference.test", transport=recording, policy=policy
    ) as client:
        await decompose(
            client, GOALS[Instructions], extra_headers={"X-Reference-Fault": "duration=1"}
        )
    polls = recording.polls()
    for answer, following in itertools.pairwise(polls):
        assert following.started - answer.started >= 0.095
    # ~1 s at one poll per 0.1 s, not one more per change (there are 5 changes).
    assert len(polls) <= 12


async def test_resume_polls_without_submitting(
    client: AgentGeneratorClient, service: ReferenceApp
) -> None:
    job_id = await client.submit(
        operation=Operation.DECOMPOSE,
        payload={"description": GOALS[VagueGoal]},
        idempotency_key="resume-me",
    )
    updates: list[JobUpdate] = []

    async def on_update(update: JobUpdate) -> None:
        updates.append(update)

    result = await client.run(
        operation=Operation.DECOMPOSE,
        payload={"description": GOALS[VagueGoal]},
        idempotency_key="resume-me",
        upstream_job_id=job_id,
        on_update=on_update,
    )
    assert isinstance(result, VagueGoal)
    assert service.stats.submits == 1
    assert service.stats.jobs_created == 1
    assert "submitted" not in {update.kind for update in updates}
    assert updates[-1].status == "completed"


async def test_cancel_event_sends_delete_and_raises_cancelled(
    client: AgentGeneratorClient, service: ReferenceApp
) -> None:
    cancel = asyncio.Event()
    submitted: list[str] = []

    async def on_update(update: JobUpdate) -> None:
        if update.kind == "submitted":
            submitted.append(update.job_id)
        if update.kind == "status" and update.status == "running":
            cancel.set()

    with pytest.raises(JobCancelled) as info:
        await decompose(
            client,
            GOALS[Instructions],
            cancel=cancel,
            on_update=on_update,
            extra_headers={"X-Reference-Fault": "duration=5"},
        )
    assert info.value.error_type == "cancelled"
    assert service.stats.deletes == 1
    answer = await client.poll(job_id=submitted[0])
    assert answer.status == "cancelled"


async def test_task_cancel_sends_delete_and_reraises(
    client: AgentGeneratorClient, service: ReferenceApp
) -> None:
    submitted = asyncio.Event()

    async def on_update(update: JobUpdate) -> None:
        if update.kind == "submitted":
            submitted.set()

    task = asyncio.create_task(
        decompose(
            client,
            GOALS[Instructions],
            on_update=on_update,
            extra_headers={"X-Reference-Fault": "duration=5"},
        )
    )
    await submitted.wait()
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert service.stats.deletes == 1


async def test_service_side_cancel_ends_as_cancelled(
    client: AgentGeneratorClient, service: ReferenceApp
) -> None:
    async def cancel_from_elsewhere(update: JobUpdate) -> None:
        if update.kind == "submitted":
            asyncio.get_running_loop().call_later(
                0.1, asyncio.ensure_future, client.cancel(job_id=update.job_id)
            )

    with pytest.raises(JobCancelled, match="cancelled by the service"):
        await decompose(
            client,
            GOALS[Instructions],
            on_update=cancel_from_elsewhere,
            extra_headers={"X-Reference-Fault": "duration=5"},
        )
    assert service.stats.deletes == 1  # only the other party's


async def test_detach_stops_a_held_poll_at_once_and_sends_no_delete(
    service: ReferenceApp, recording: Recording
) -> None:
    # The first poll asks wait=4..6 s and the job stays queued for 6 s: it is held.
    policy = PollPolicy(interval=5, max_interval=10, max_wait=5, budget=60)
    detach = asyncio.Event()
    submitted = asyncio.Event()
    jobs: list[str] = []

    async def on_update(update: JobUpdate) -> None:
        jobs.append(update.job_id)
        submitted.set()

    async with AgentGeneratorClient(
        base_url="http://reference.test", transport=recording, policy=policy
    ) as client:
        task = asyncio.create_task(
            decompose(
                client,
                GOALS[Instructions],
                detach=detach,
                on_update=on_update,
                extra_headers={"X-Reference-Fault": "duration=120"},
            )
        )
        await submitted.wait()
        await asyncio.sleep(0.3)
        assert service.stats.polls == 1  # in flight, held
        started = time.monotonic()
        detach.set()
        with pytest.raises(Detached) as info:
            await task
        assert time.monotonic() - started < 2  # did not wait for the 4-6 s hold
        assert info.value.job_id == jobs[0]
        assert service.stats.deletes == 0
        assert (await client.poll(job_id=jobs[0])).status == "queued"
    # The held poll was aborted, never answered: only our own check is in the log.
    assert [entry.wait for entry in recording.polls()] == [None]


async def test_detached_job_resumes_to_its_result(
    client: AgentGeneratorClient, service: ReferenceApp
) -> None:
    detach = asyncio.Event()

    async def detach_once_submitted(update: JobUpdate) -> None:
        detach.set()

    with pytest.raises(Detached) as info:
        await decompose(
            client, GOALS[UnachievableGoal], detach=detach, on_update=detach_once_submitted
        )
    assert info.value.job_id is not None
    result = await decompose(client, GOALS[UnachievableGoal], upstream_job_id=info.value.job_id)
    assert isinstance(result, UnachievableGoal)
    assert service.stats.submits == 1
    assert service.stats.deletes == 0


async def test_budget_ends_in_poll_timeout_and_cancels_upstream(
    client: AgentGeneratorClient, service: ReferenceApp
) -> None:
    with pytest.raises(PollTimeout) as info:
        await decompose(
            client,
            GOALS[Instructions],
            budget=0.3,
            extra_headers={"X-Reference-Fault": "duration=5"},
        )
    assert info.value.error_type == "poll_timeout"
    assert service.stats.deletes == 1


async def test_waits_asked_stay_within_max_wait_and_the_budget(
    service: ReferenceApp, recording: Recording
) -> None:
    policy = PollPolicy(interval=0.05, max_interval=0.8, max_wait=0.3, budget=10)
    async with AgentGeneratorClient(
        base_url="http://reference.test", transport=recording, policy=policy
    ) as client:
        with pytest.raises(PollTimeout):
            await decompose(
                client,
                GOALS[Instructions],
                budget=1.0,
                extra_headers={"X-Reference-Fault": "duration=20"},
            )
    waits = [entry.wait for entry in recording.polls()]
    assert all(wait is not None and 0 < wait <= 0.3 for wait in waits)
    assert max(waits) > 0.25  # it did reach the cap
    # The last poll asked no more than what was left of the budget.
    start = recording.log[0].started
    for entry in recording.polls():
        assert entry.started + entry.wait <= start + 1.0 + 0.05


async def test_after_a_slow_on_update_the_next_poll_does_not_wait(
    service: ReferenceApp, recording: Recording
) -> None:
    """A caller whose storage was away (a database restart) hears at once what changed
    meanwhile: the poll after its slow ``on_update`` asks no ``wait``, which a long-poll would
    hold until the next change."""
    holding = PollPolicy(interval=0.5, max_interval=2, budget=20, max_wait=2, cancel_timeout=1)
    updates: list[tuple[JobUpdate, float]] = []
    slow_until = 0.0

    async def on_update(update: JobUpdate) -> None:
        nonlocal slow_until
        updates.append((update, time.monotonic()))
        if update.kind == "progress" and not slow_until:
            await asyncio.sleep(1.6)  # two phases (~0.6 s each) pass meanwhile
            slow_until = time.monotonic()

    async with AgentGeneratorClient(
        base_url="http://reference.test", transport=recording, policy=holding
    ) as client:
        await decompose(
            client,
            GOALS[Instructions],
            on_update=on_update,
            extra_headers={"X-Reference-Fault": "duration=4"},
        )
    after = [poll for poll in recording.polls() if poll.started >= slow_until]
    assert after[0].wait is None, after[0]
    assert after[0].started - slow_until < 0.1
    slow = next(u for u, _ in updates if u.kind == "progress")
    caught_up = next((u, at) for u, at in updates if u.kind == "progress" and at >= slow_until)
    assert caught_up[0].percent > slow.percent
    assert caught_up[1] - slow_until < 0.2
    # Every poll before the slow update and after the catch-up long-polled as usual.
    assert all(poll.wait for poll in recording.polls()[1:] if poll is not after[0])
