"""Answers no real service gives on demand, served by ``httpx.MockTransport`` handlers.

Everything else is tested against the reference service (``test_client.py`` and friends).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from agent_generator import AgentGeneratorClient, Operation, PollPolicy
from agent_generator.exceptions import (
    HTTPStatusError,
    InvalidResponse,
    JobNotFound,
    ServiceUnavailable,
)
from agent_generator.polling import SLOW_UPDATE_SECONDS
from agent_generator.results import DecomposeError, VagueGoal

FAST = PollPolicy(interval=0.02, max_interval=0.1, budget=10, cancel_timeout=0.5)
VAGUE = {"type": "vague_goal", "suggested_goal": "Say which news and where to send it"}


class Recorder:
    """A MockTransport handler fed with scripted answers; records every request and when."""

    def __init__(self, *, submit: list[httpx.Response], polls: list[httpx.Response]) -> None:
        self.submit_answers = submit
        self.poll_answers = polls
        self.requests: list[tuple[float, httpx.Request]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((time.monotonic(), request))
        if request.method == "POST":
            return self.submit_answers.pop(0)
        if request.method == "GET":
            return self.poll_answers.pop(0)
        return httpx.Response(204)

    def times(self, method: str) -> list[float]:
        return [at for at, request in self.requests if request.method == method]

    def client(self, policy: PollPolicy = FAST) -> AgentGeneratorClient:
        return AgentGeneratorClient(
            base_url="http://generator.test",
            transport=httpx.MockTransport(self),
            policy=policy,
        )


def accepted(job_id: str = "job-1") -> httpx.Response:
    return httpx.Response(202, json={"job_id": job_id, "status": "queued"})


def job(status: str, **fields: object) -> httpx.Response:
    return httpx.Response(200, json={"job_id": "job-1", "status": status, **fields})


async def test_http_date_retry_after_is_honoured() -> None:
    when = datetime.now(UTC) + timedelta(seconds=3)
    recorder = Recorder(
        submit=[accepted()],
        polls=[
            httpx.Response(503, headers={"Retry-After": format_datetime(when, usegmt=True)}),
            job("completed", result=VAGUE),
        ],
    )
    async with recorder.client() as client:
        result = await client.run(
            operation=Operation.DECOMPOSE, payload={"description": "x"}, idempotency_key="k"
        )
    assert isinstance(result, VagueGoal)
    first, second = recorder.times("GET")
    # The date has one-second resolution, so the wait is between 2 and 3 s.
    assert second - first >= 2.0


async def test_a_500_on_poll_fails_at_once_without_retry() -> None:
    recorder = Recorder(
        submit=[accepted()],
        polls=[httpx.Response(500, text="database is on fire"), job("running")],
    )
    async with recorder.client() as client:
        with pytest.raises(HTTPStatusError, match="database is on fire") as info:
            await client.run(
                operation=Operation.DECOMPOSE, payload={"description": "x"}, idempotency_key="k"
            )
    assert info.value.status_code == 500
    assert info.value.error_type == "http_error"
    assert len(recorder.times("GET")) == 1


async def test_a_500_on_submit_is_not_retried() -> None:
    recorder = Recorder(submit=[httpx.Response(500), accepted()], polls=[])
    async with recorder.client() as client:
        with pytest.raises(HTTPStatusError):
            await client.submit(
                operation=Operation.GENERATE, payload={"instructions": {}}, idempotency_key="k"
            )
    assert len(recorder.times("POST")) == 1


async def test_submit_sends_the_idempotency_key_and_extra_headers() -> None:
    recorder = Recorder(submit=[httpx.Response(503), accepted("job-7")], polls=[])
    async with recorder.client() as client:
        job_id = await client.submit(
            operation=Operation.UPDATE,
            payload={"update_request": "u", "current_agent_json": {}},
            idempotency_key="42:1",
            extra_headers={"X-Reference-Fault": "duration=1"},
        )
    assert job_id == "job-7"
    posts = [request for _, request in recorder.requests if request.method == "POST"]
    assert [request.url.path for request in posts] == ["/api/update-agent"] * 2
    assert {request.headers["Idempotency-Key"] for request in posts} == {"42:1"}
    assert {request.headers["X-Reference-Fault"] for request in posts} == {"duration=1"}


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(200, text="<html>busy</html>"), "not JSON"),
        (httpx.Response(202, json={"status": "queued"}), "invalid job_id None"),
        (httpx.Response(202, json={"job_id": "a/b"}), "invalid job_id 'a/b'"),
        (httpx.Response(202, json={"job_id": "ok", "status": "weird"}), "unknown status"),
    ],
)
async def test_bad_submit_answers_are_invalid(answer: httpx.Response, error: str) -> None:
    recorder = Recorder(submit=[answer], polls=[])
    async with recorder.client() as client:
        with pytest.raises(InvalidResponse, match=error):
            await client.submit(
                operation=Operation.DECOMPOSE, payload={"description": "x"}, idempotency_key="k"
            )


async def test_a_404_on_poll_is_job_not_found_at_once() -> None:
    recorder = Recorder(submit=[], polls=[httpx.Response(404), job("running")])
    async with recorder.client() as client:
        with pytest.raises(JobNotFound):
            await client.run(
                operation=Operation.DECOMPOSE,
                payload={},
                idempotency_key="k",
                upstream_job_id="job-1",
            )
    assert len(recorder.times("GET")) == 1
    assert recorder.times("POST") == []


async def test_transient_errors_stop_at_the_cap_and_one_success_resets_it() -> None:
    policy = PollPolicy(interval=0.01, max_interval=0.02, max_consecutive_errors=3)
    busy = httpx.Response(503)
    # Two failures, a good answer, two failures, success: never three in a row.
    recorder = Recorder(
        submit=[accepted()],
        polls=[busy, busy, job("running"), busy, busy, job("completed", result=VAGUE)],
    )
    async with recorder.client(policy) as client:
        result = await client.run(
            operation=Operation.DECOMPOSE, payload={"description": "x"}, idempotency_key="k"
        )
    assert isinstance(result, VagueGoal)
    recorder = Recorder(submit=[accepted()], polls=[busy, busy, busy, job("running")])
    async with recorder.client(policy) as client:
        with pytest.raises(ServiceUnavailable):
            await client.run(
                operation=Operation.DECOMPOSE, payload={"description": "x"}, idempotency_key="k"
            )
    assert len(recorder.times("GET")) == 3


async def test_cancel_reports_false_when_the_service_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with AgentGeneratorClient(
        base_url="http://generator.test", transport=httpx.MockTransport(refuse), policy=FAST
    ) as client:
        assert await client.cancel(job_id="job-1") is False


@pytest.mark.parametrize(
    ("request_timeout", "policy", "cap"),
    [
        (30.0, PollPolicy(), 25.0),
        (httpx.Timeout(10.0, read=12.0), PollPolicy(), 7.0),
        (0.4, PollPolicy(), 0.2),
        (None, PollPolicy(max_wait=9), 9.0),
        (30.0, PollPolicy(max_wait=0), 0.0),
    ],
)
async def test_wait_is_kept_below_the_read_timeout(
    request_timeout: float | httpx.Timeout | None, policy: PollPolicy, cap: float
) -> None:
    async with AgentGeneratorClient(
        base_url="http://x", timeout=request_timeout, policy=policy
    ) as client:
        assert client.wait_cap == pytest.approx(cap)


async def test_retry_after_on_a_good_answer_delays_the_next_poll() -> None:
    recorder = Recorder(
        submit=[accepted()],
        polls=[
            httpx.Response(
                200, json={"job_id": "job-1", "status": "running"}, headers={"Retry-After": "1"}
            ),
            job("completed", result=VAGUE),
        ],
    )
    async with recorder.client() as client:
        await client.run(
            operation=Operation.DECOMPOSE, payload={"description": "x"}, idempotency_key="k"
        )
    first, second = recorder.times("GET")
    # A status change would be polled again at once; Retry-After wins.
    assert second - first >= 1.0


async def test_retry_after_still_counts_after_a_slow_on_update() -> None:
    """A slow ``on_update`` makes the next poll look at once, but not sooner than the
    service's ``Retry-After`` allows."""
    recorder = Recorder(
        submit=[accepted()],
        polls=[
            httpx.Response(
                200, json={"job_id": "job-1", "status": "running"}, headers={"Retry-After": "1"}
            ),
            job("completed", result=VAGUE),
        ],
    )
    slow = SLOW_UPDATE_SECONDS + 0.2

    async def on_update(update) -> None:
        if update.kind == "status" and update.status == "running":
            await asyncio.sleep(slow)  # the caller's storage was slow or away

    async with recorder.client() as client:
        await client.run(
            operation=Operation.DECOMPOSE,
            payload={"description": "x"},
            idempotency_key="k",
            on_update=on_update,
        )
    first, second = recorder.times("GET")
    assert second - first >= slow + 1.0


async def test_cancel_gives_up_after_cancel_timeout() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(204)

    policy = PollPolicy(cancel_timeout=0.2)
    async with AgentGeneratorClient(
        base_url="http://generator.test", transport=httpx.MockTransport(hang), policy=policy
    ) as client:
        started = time.monotonic()
        assert await client.cancel(job_id="job-1") is False
        assert time.monotonic() - started < 2


async def test_a_decompose_error_result_is_returned_not_raised() -> None:
    # The reference service never answers this decompose result type.
    error = {"type": "error", "error": "The model refused.", "error_type": "llm_refusal"}
    recorder = Recorder(submit=[accepted()], polls=[job("completed", result=error)])
    async with recorder.client() as client:
        result = await client.decompose_goal(description="x", idempotency_key="k")
    assert isinstance(result, DecomposeError)
    assert result.as_dict() == error


async def test_poll_caps_the_wait_it_asks() -> None:
    recorder = Recorder(submit=[], polls=[job("running"), job("running")])
    async with recorder.client(PollPolicy(max_wait=10)) as client:
        await client.poll(job_id="job-1", wait=60)
        await client.poll(job_id="job-1")
    first, second = (request for _, request in recorder.requests)
    assert first.url.params["wait"] == "10"
    assert "wait" not in second.url.params
