"""Every fault of the reference service, injected per job with ``X-Reference-Fault``.

Transient faults under the cap are survived; everything else ends as the right
``error_type``, at once when retrying cannot help. In-process over ``httpx.ASGITransport``;
``slow-poll`` and ``slow-submit`` beyond the request timeout need a real socket (the
in-process transport has no timeouts) and are in ``test_client_live.py``, with ``reset``
over a real connection.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from agent_generator import AgentGeneratorClient, PollPolicy
from agent_generator.exceptions import (
    AgentGeneratorError,
    ConnectionFailed,
    InvalidResponse,
    JobFailed,
    JobNotFound,
    RateLimited,
    RequestTimeout,
    ServiceUnavailable,
)
from agent_generator.reference import ReferenceApp, ReferenceSettings, create_app
from agent_generator.results import AgentResult, Instructions

POLICY = PollPolicy(interval=0.01, max_interval=0.05, max_wait=0.1, budget=20)
GOAL = (
    "Every weekday at 8am, search the web for the latest news about solar power, "
    "summarise the top 5 articles in bullet points and email the summary to me@example.com"
)


class TimedTransport(httpx.AsyncBaseTransport):
    """The real ASGITransport, recording (method, status, started, ended) per request."""

    def __init__(self, app: ReferenceApp) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.log: list[tuple[str, int, float, float]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.log.append((request.method, response.status_code, started, time.monotonic()))
        return response


@pytest.fixture
def service() -> ReferenceApp:
    return create_app(settings=ReferenceSettings(job_seconds=0.2, max_wait_seconds=5))


@pytest.fixture
def transport(service: ReferenceApp) -> TimedTransport:
    return TimedTransport(service)


@pytest.fixture
async def client(transport: TimedTransport) -> AsyncIterator[AgentGeneratorClient]:
    async with AgentGeneratorClient(
        base_url="http://reference.test", transport=transport, policy=POLICY
    ) as client:
        yield client


async def decompose_with(client: AgentGeneratorClient, faults: str) -> object:
    return await client.decompose_goal(
        description=GOAL,
        idempotency_key=f"key-{faults}",
        extra_headers={"X-Reference-Fault": faults},
    )


@pytest.mark.parametrize(
    "faults",
    [
        "submit-503=4",
        "submit-429=2,retry-after=0.05",
        "submit-503=1,submit-429=3",
        "poll-503=4",
        "poll-429=2,retry-after=0.05",
        "poll-503=1,poll-429=1,poll-504=2",
        "slow-poll=0.05",
        "slow-submit=0.05",
    ],
)
async def test_transient_faults_under_the_cap_are_survived(
    client: AgentGeneratorClient, service: ReferenceApp, faults: str
) -> None:
    result = await decompose_with(client, faults)
    assert isinstance(result, Instructions)
    assert service.stats.jobs_created == 1
    submit_errors = sum(
        int(item.split("=")[1]) for item in faults.split(",") if item.startswith("submit-")
    )
    assert service.stats.submits == submit_errors + 1
    assert set(service.stats.submits_by_key) == {f"key-{faults}"}


@pytest.mark.parametrize(
    ("faults", "error", "error_type"),
    [
        ("submit-503=5", ServiceUnavailable, "service_unavailable"),
        ("submit-429=5,retry-after=0.01", RateLimited, "rate_limit"),
        ("poll-503=5", ServiceUnavailable, "service_unavailable"),
        ("poll-429=5", RateLimited, "rate_limit"),
        ("poll-504=5", RequestTimeout, "timeout"),
        ("poll-503=2,poll-504=3", RequestTimeout, "timeout"),
    ],
)
async def test_transient_faults_beyond_the_cap_end_with_their_type(
    client: AgentGeneratorClient,
    service: ReferenceApp,
    faults: str,
    error: type[AgentGeneratorError],
    error_type: str,
) -> None:
    with pytest.raises(error) as info:
        await decompose_with(client, faults)
    assert info.value.error_type == error_type
    # Exactly the cap: five requests of the failing kind, not one more.
    if faults.startswith("submit"):
        assert (service.stats.submits, service.stats.polls) == (5, 0)
    else:
        assert (service.stats.submits, service.stats.polls) == (1, 5)


@pytest.mark.parametrize(
    ("faults", "error", "message", "polls"),
    [
        ("malformed", InvalidResponse, "not JSON", 1),
        ("unknown-status", InvalidResponse, "unknown status 'exploded'", 1),
        ("bad-result", InvalidResponse, "'completed' without a result object", None),
        ("expire", JobNotFound, "does not know this job", 2),
        ("bad-job-id", InvalidResponse, "invalid job_id '../../etc'", 0),
        ("fail=llm_timeout", JobFailed, "The language model did not answer in time.", None),
    ],
)
async def test_fatal_faults_end_at_once_with_their_type(
    client: AgentGeneratorClient,
    service: ReferenceApp,
    faults: str,
    error: type[AgentGeneratorError],
    message: str,
    polls: int | None,
) -> None:
    with pytest.raises(error, match=message) as info:
        await decompose_with(client, faults)
    assert info.value.error_type == error.error_type
    if polls is not None:
        assert service.stats.polls == polls
    assert service.stats.submits == 1


async def test_a_dropped_connection_in_process_is_connection_error(
    client: AgentGeneratorClient, service: ReferenceApp
) -> None:
    # ASGITransport lets the app's ConnectionResetError through; it is still a lost connection.
    with pytest.raises(ConnectionFailed) as info:
        await decompose_with(client, "reset")
    assert info.value.error_type == "connection_error"
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert service.stats.polls == POLICY.max_consecutive_errors


async def test_failed_job_keeps_the_upstream_error_type(client: AgentGeneratorClient) -> None:
    with pytest.raises(JobFailed) as info:
        await client.generate_agent(
            instructions={"goal": GOAL},
            idempotency_key="gen-fail",
            extra_headers={"X-Reference-Fault": "fail=llm_error"},
        )
    assert info.value.error_type == "job_failed"
    assert info.value.upstream_error_type == "llm_error"
    assert str(info.value) == "The language model returned an error."


async def test_generation_refused_by_the_service_is_job_failed(
    client: AgentGeneratorClient,
) -> None:
    with pytest.raises(JobFailed) as info:
        await client.generate_agent(
            instructions={"goal": "Predict the winning lottery numbers for next week"},
            idempotency_key="gen-refused",
        )
    assert info.value.upstream_error_type == "unachievable_goal"


@pytest.mark.parametrize("operation", ["generate", "update", "customize"])
async def test_agent_without_agent_json_is_invalid(
    client: AgentGeneratorClient, operation: str
) -> None:
    agent = await client.generate_agent(instructions={"goal": GOAL}, idempotency_key="good")
    assert isinstance(agent, AgentResult)
    bad = {"idempotency_key": "bad", "extra_headers": {"X-Reference-Fault": "bad-result"}}
    with pytest.raises(InvalidResponse, match="'agent_json' is missing"):
        if operation == "generate":
            await client.generate_agent(instructions={"goal": GOAL}, **bad)
        elif operation == "update":
            await client.update_agent(
                update_request="remove the email step", current_agent_json=agent.agent_json, **bad
            )
        else:
            await client.customize_template(
                template_agent_json=agent.agent_json,
                modification_request="remove the email step",
                **bad,
            )


async def test_retry_after_on_429_is_honoured_before_the_next_poll(
    client: AgentGeneratorClient, transport: TimedTransport
) -> None:
    result = await decompose_with(client, "poll-429=1,retry-after=3")
    assert isinstance(result, Instructions)
    polls = [entry for entry in transport.log if entry[0] == "GET"]
    (_, status, _, limited_at), (_, _, next_started, _) = polls[0], polls[1]
    assert status == 429
    assert next_started - limited_at >= 3.0
