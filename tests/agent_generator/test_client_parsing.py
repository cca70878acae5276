"""The client's pure parts: job ids, Retry-After, the poll policy, answers and results."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from agent_generator import Operation, PollPolicy, validate_job_id
from agent_generator.exceptions import (
    AgentGeneratorError,
    ConnectionFailed,
    Detached,
    HTTPStatusError,
    InvalidResponse,
    JobCancelled,
    JobFailed,
    JobNotFound,
    PollTimeout,
    RateLimited,
    RequestTimeout,
    ServiceUnavailable,
    TransientError,
)
from agent_generator.jobs import parse_poll_answer
from agent_generator.policy import Backoff, jittered, parse_retry_after
from agent_generator.results import (
    AgentResult,
    ClarifyingQuestions,
    DecomposeError,
    Instructions,
    UnachievableGoal,
    VagueGoal,
    parse_result,
    result_from_dict,
)

AGENT_JSON = {
    "id": "a1",
    "version": 1,
    "is_active": True,
    "name": "Digest",
    "description": "d",
    "nodes": [
        {"id": "n1", "block_id": "b1", "input_default": {}, "metadata": {}},
        {"id": "n2", "block_id": "b2", "input_default": {}, "metadata": {}},
    ],
    "links": [
        {
            "id": "l1",
            "source_id": "n1",
            "sink_id": "n2",
            "source_name": "out",
            "sink_name": "in",
            "is_static": False,
        }
    ],
}


@pytest.mark.parametrize("job_id", ["a", "A-b_9", "x" * 128])
def test_valid_job_ids_pass(job_id: str) -> None:
    assert validate_job_id(job_id) == job_id


@pytest.mark.parametrize(
    "job_id", ["", "x" * 129, "../etc", "a/b", "a?b", "a b", "é", None, 12, "a\n"]
)
def test_invalid_job_ids_raise_invalid_response(job_id: object) -> None:
    with pytest.raises(InvalidResponse) as info:
        validate_job_id(job_id)
    assert info.value.error_type == "invalid_response"


def test_error_types_follow_the_protocol_table() -> None:
    expected = {
        RateLimited: "rate_limit",
        ServiceUnavailable: "service_unavailable",
        RequestTimeout: "timeout",
        ConnectionFailed: "connection_error",
        InvalidResponse: "invalid_response",
        JobNotFound: "job_not_found",
        JobFailed: "job_failed",
        PollTimeout: "poll_timeout",
        JobCancelled: "cancelled",
    }
    for cls, error_type in expected.items():
        error = cls("boom")
        assert error.error_type == error_type
        assert isinstance(error, AgentGeneratorError)
        assert str(error) == "boom"
    assert HTTPStatusError("x", status_code=418).error_type == "http_error"
    assert HTTPStatusError("x", status_code=418).status_code == 418
    assert JobFailed("x", upstream_error_type="llm_timeout").upstream_error_type == "llm_timeout"
    transient = (RateLimited, ServiceUnavailable, RequestTimeout, ConnectionFailed)
    assert all(issubclass(cls, TransientError) for cls in transient)
    assert not issubclass(Detached, AgentGeneratorError)
    assert not hasattr(Detached("x"), "error_type")
    assert AgentGeneratorError("x", error_type="custom").error_type == "custom"


def test_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 11, 24, 3, 0, 0, tzinfo=UTC)
    assert parse_retry_after(value="3") == 3.0
    assert parse_retry_after(value=" 1.5 ") == 1.5
    assert parse_retry_after(value="-4") == 0.0
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(value=later, now=now) == 42.0
    earlier = format_datetime(now - timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(value=earlier, now=now) == 0.0
    for junk in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(value=junk) is None


def test_policy_rejects_nonsense_and_scales() -> None:
    with pytest.raises(ValueError, match="interval"):
        PollPolicy(interval=0)
    with pytest.raises(ValueError, match="max_interval"):
        PollPolicy(interval=5, max_interval=1)
    with pytest.raises(ValueError, match="max_wait"):
        PollPolicy(max_wait=30)
    with pytest.raises(ValueError, match="jitter"):
        PollPolicy(jitter=1.5)
    scaled = PollPolicy().scaled(factor=0.01)
    assert scaled.interval == pytest.approx(0.02)
    assert scaled.max_wait == pytest.approx(0.25)
    assert scaled.budget == pytest.approx(18.0)
    assert scaled.max_consecutive_errors == 5


def test_backoff_doubles_to_the_cap_and_resets() -> None:
    backoff = Backoff(policy=PollPolicy(interval=2, max_interval=30, jitter=0))
    seen = []
    for _ in range(6):
        seen.append(backoff.next_wait())
        backoff.grow()
    assert seen == [2, 4, 8, 16, 30, 30]
    backoff.reset()
    assert backoff.next_wait() == 2


def test_jitter_spreads_waits_within_twenty_percent() -> None:
    rng = random.Random(7)
    draws = [jittered(seconds=10, jitter=0.2, rng=rng) for _ in range(500)]
    assert min(draws) >= 8 and max(draws) <= 12
    assert max(draws) - min(draws) > 3  # really spread, not one value


def test_poll_answer_validation() -> None:
    answer = parse_poll_answer(
        job_id="j1",
        body={"job_id": "j1", "status": "running", "progress": {"percent": 140, "phase": "p"}},
        retry_after=None,
    )
    assert (answer.status, answer.percent, answer.phase, answer.terminal) == (
        "running",
        100,
        "p",
        False,
    )
    # A malformed progress (optional extension) is dropped, not fatal.
    answer = parse_poll_answer(
        job_id="j1", body={"status": "queued", "progress": "half"}, retry_after=2.0
    )
    assert (answer.percent, answer.phase, answer.retry_after) == (None, None, 2.0)
    bad_bodies = {
        "unknown status 'paused'": {"status": "paused"},
        "unknown status None": {"job_id": "j1"},
        "without a result object": {"status": "completed", "result": ["x"]},
        "not a JSON object": ["status", "completed"],
        "answer is for job_id 'j2'": {"job_id": "j2", "status": "running"},
    }
    for message, body in bad_bodies.items():
        with pytest.raises(InvalidResponse, match=message):
            parse_poll_answer(job_id="j1", body=body, retry_after=None)


def test_every_decompose_result_type_parses_and_round_trips() -> None:
    results = [
        {"type": "instructions", "steps": [{"description": "Search", "block_name": "Web search"}]},
        {"type": "clarifying_questions", "questions": [{"question": "Who?", "keyword": "who"}]},
        {"type": "unachievable_goal", "reason": "r", "suggested_goal": "s"},
        {"type": "vague_goal", "suggested_goal": "s"},
        {"type": "error", "error": "e", "error_type": "llm_error"},
    ]
    classes = [Instructions, ClarifyingQuestions, UnachievableGoal, VagueGoal, DecomposeError]
    for raw, cls in zip(results, classes, strict=True):
        parsed = parse_result(operation=Operation.DECOMPOSE, result=raw)
        assert isinstance(parsed, cls)
        assert parsed.as_dict() == raw
        assert result_from_dict(parsed.as_dict()) == parsed


def test_instruction_steps_keep_unknown_fields() -> None:
    raw = {"type": "instructions", "steps": [{"description": "d", "inputs": {"q": 1}}]}
    parsed = parse_result(operation=Operation.DECOMPOSE, result=raw)
    assert parsed.as_dict() == raw


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"type": "plan"}, "unknown type 'plan'"),
        ({"steps": []}, "unknown type None"),
        ({"type": "instructions", "steps": []}, "'steps' is empty"),
        ({"type": "instructions", "steps": [{"action": "x"}]}, "'description'"),
        ({"type": "clarifying_questions", "questions": [{"question": "q"}]}, "'keyword'"),
        ({"type": "unachievable_goal", "reason": "r"}, "'suggested_goal'"),
        ({"type": "vague_goal", "suggested_goal": 3}, "'suggested_goal'"),
        ({"type": "error", "error": "e"}, "'error_type'"),
    ],
)
def test_malformed_decompose_results_are_invalid(result: dict, message: str) -> None:
    with pytest.raises(InvalidResponse, match=message):
        parse_result(operation=Operation.DECOMPOSE, result=result)


@pytest.mark.parametrize("operation", [Operation.GENERATE, Operation.UPDATE, Operation.CUSTOMIZE])
def test_agent_results_parse_and_store(operation: Operation) -> None:
    parsed = parse_result(operation=operation, result={"agent_json": AGENT_JSON, "success": True})
    assert isinstance(parsed, AgentResult)
    assert parsed.as_dict() == {"type": "agent", "agent_json": AGENT_JSON}
    assert result_from_dict(parsed.as_dict()) == parsed
    questions = {"type": "clarifying_questions", "questions": [{"question": "q", "keyword": "k"}]}
    assert isinstance(parse_result(operation=operation, result=questions), ClarifyingQuestions)


@pytest.mark.parametrize(
    ("agent_json", "message"),
    [
        (None, "'agent_json' is missing"),
        ("{}", "'agent_json' is missing"),
        ({**AGENT_JSON, "nodes": None}, "'nodes' is not a list"),
        ({**AGENT_JSON, "links": [1]}, "'links' is not a list of objects"),
        ({**AGENT_JSON, "nodes": [{"block_id": "b"}]}, r"nodes\[0\] has no string 'id'"),
        (
            {**AGENT_JSON, "nodes": [AGENT_JSON["nodes"][0]]},
            r"links\[0\]\.sink_id 'n2' names no node",
        ),
    ],
)
def test_malformed_agents_are_invalid(agent_json: object, message: str) -> None:
    with pytest.raises(InvalidResponse, match=message):
        parse_result(operation=Operation.GENERATE, result={"agent_json": agent_json})
