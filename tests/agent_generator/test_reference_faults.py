"""Every fault the reference service can inject (``X-Reference-Fault`` and settings)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from agent_generator.reference import ReferenceSettings, create_app

DECOMPOSE = "/api/decompose-description"
GOAL = {"description": "Search the web for cat news and email it to cats@example.com"}


async def submit(client: httpx.AsyncClient, faults: str, *, key: str | None = None, path=DECOMPOSE):
    headers = {"X-Reference-Fault": faults}
    if key is not None:
        headers["Idempotency-Key"] = key
    body = GOAL if path == DECOMPOSE else {"instructions": {"goal": GOAL["description"]}}
    return await client.post(path, json=body, headers=headers)


async def job_id_of(client: httpx.AsyncClient, faults: str, **kwargs) -> str:
    answer = await submit(client, faults, **kwargs)
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


async def test_duration_sets_this_jobs_length(reference_client) -> None:
    quick = await job_id_of(reference_client, "duration=0")
    slow = await job_id_of(reference_client, "duration=60")
    assert (await reference_client.get(f"/api/jobs/{quick}")).json()["status"] == "completed"
    assert (await reference_client.get(f"/api/jobs/{slow}")).json()["status"] in {
        "queued",
        "running",
    }


async def test_slow_poll_delays_every_poll(reference_client) -> None:
    job_id = await job_id_of(reference_client, "duration=0,slow-poll=0.3")
    for _ in range(2):
        start = time.monotonic()
        answer = await reference_client.get(f"/api/jobs/{job_id}")
        assert time.monotonic() - start >= 0.3
        assert answer.json()["status"] == "completed"


async def test_slow_submit_answers_late_but_a_retry_gets_the_same_job(
    reference_app, reference_client
) -> None:
    first = asyncio.create_task(submit(reference_client, "slow-submit=0.5", key="job-7:1"))
    await asyncio.sleep(0.1)
    assert not first.done()
    assert reference_app.stats.jobs_created == 1, "the job exists before the answer"
    retry = await submit(reference_client, "slow-submit=0.5", key="job-7:1")
    assert retry.status_code == 202
    assert not first.done(), "only the first submit is slow"
    answer = await first
    assert answer.json()["job_id"] == retry.json()["job_id"]
    assert reference_app.stats.jobs_created == 1
    assert reference_app.stats.submits_by_key == {"job-7:1": 2}


@pytest.mark.parametrize(("name", "status"), [("submit-503", 503), ("submit-429", 429)])
async def test_submit_errors_for_the_first_n_submits_of_a_key(
    reference_app, reference_client, name: str, status: int
) -> None:
    spec = f"{name}=2,retry-after=0.5"
    answers = [await submit(reference_client, spec, key="k") for _ in range(3)]
    assert [a.status_code for a in answers] == [status, status, 202]
    assert answers[0].headers["retry-after"] == "0.5"
    assert "retry-after" not in answers[2].headers
    assert reference_app.stats.jobs_created == 1
    assert reference_app.stats.submits == 3
    assert reference_app.stats.submits_by_key == {"k": 3}
    other_key = await submit(reference_client, spec, key="other")
    assert other_key.status_code == status, "counted per key"


async def test_submit_503_then_429_when_combined(reference_client) -> None:
    spec = "submit-503=1,submit-429=1"
    codes = [(await submit(reference_client, spec, key="k")).status_code for _ in range(3)]
    assert codes == [503, 429, 202]


async def test_submit_faults_without_a_key_count_per_header(reference_client) -> None:
    codes = [(await submit(reference_client, "submit-503=1")).status_code for _ in range(2)]
    assert codes == [503, 202]


@pytest.mark.parametrize(
    ("name", "status", "retry_after"),
    [("poll-503", 503, "1"), ("poll-429", 429, "1"), ("poll-504", 504, None)],
)
async def test_poll_errors_for_the_first_n_polls(
    reference_client, name: str, status: int, retry_after: str | None
) -> None:
    job_id = await job_id_of(reference_client, f"duration=0,{name}=2,retry-after=1")
    answers = [await reference_client.get(f"/api/jobs/{job_id}") for _ in range(3)]
    assert [a.status_code for a in answers] == [status, status, 200]
    assert answers[0].headers.get("retry-after") == retry_after
    assert answers[0].headers["content-type"] == "application/json"
    assert answers[2].json()["status"] == "completed"


async def test_no_retry_after_unless_asked(reference_client) -> None:
    job_id = await job_id_of(reference_client, "poll-503=1")
    answer = await reference_client.get(f"/api/jobs/{job_id}")
    assert answer.status_code == 503
    assert "retry-after" not in answer.headers


async def test_malformed_polls_are_not_json(reference_client) -> None:
    job_id = await job_id_of(reference_client, "malformed")
    answer = await reference_client.get(f"/api/jobs/{job_id}")
    assert answer.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer.content)


async def test_unknown_status(reference_client) -> None:
    job_id = await job_id_of(reference_client, "unknown-status")
    answer = await reference_client.get(f"/api/jobs/{job_id}")
    assert answer.json() == {"job_id": job_id, "status": "exploded"}


async def test_bad_result_for_decompose_is_a_string(run_job) -> None:
    job = await run_job(DECOMPOSE, GOAL, faults="duration=0,bad-result")
    assert job["status"] == "completed"
    assert isinstance(job["result"], str)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate-agent", {"instructions": {"goal": GOAL["description"]}}),
        (
            "/api/update-agent",
            {"update_request": "rename it to X", "current_agent_json": {"id": "a", "nodes": []}},
        ),
        (
            "/api/template-modification",
            {"modification_request": "rename it to X", "template_agent_json": {"nodes": []}},
        ),
    ],
)
async def test_bad_result_for_agents_has_no_agent_json(run_job, path, body) -> None:
    job = await run_job(path, body, faults="duration=0,bad-result")
    assert job["status"] == "completed"
    assert isinstance(job["result"], dict)
    assert "agent_json" not in job["result"]
    assert job["result"].get("type") != "clarifying_questions"


async def test_fail_ends_the_job_failed(run_job) -> None:
    job = await run_job(DECOMPOSE, GOAL, faults="duration=0.1,fail=llm_timeout")
    assert job["status"] == "failed"
    assert job["error_type"] == "llm_timeout"
    assert job["error"] == "The language model did not answer in time."
    assert "result" not in job


async def test_fail_with_any_error_type(run_job) -> None:
    job = await run_job(DECOMPOSE, GOAL, faults="duration=0,fail=quota_exceeded")
    assert job["error_type"] == "quota_exceeded"
    assert "quota_exceeded" in job["error"]


async def test_expire_forgets_the_job_after_the_first_poll(reference_client) -> None:
    job_id = await job_id_of(reference_client, "expire")
    assert (await reference_client.get(f"/api/jobs/{job_id}")).status_code == 200
    assert (await reference_client.get(f"/api/jobs/{job_id}")).status_code == 404


async def test_reset_breaks_the_poll_in_process(reference_client) -> None:
    job_id = await job_id_of(reference_client, "reset")
    with pytest.raises(httpx.ReadError):
        await reference_client.get(f"/api/jobs/{job_id}")


async def test_bad_job_id_on_submit(reference_client) -> None:
    answer = await submit(reference_client, "bad-job-id")
    assert answer.status_code == 202
    assert answer.json()["job_id"] == "../../etc"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("explode", "unknown fault 'explode'"),
        ("duration=soon", "fault 'duration'"),
        ("poll-503=-1", "fault 'poll-503'"),
        ("malformed=1", "fault 'malformed' takes no value"),
        ("fail", "fault 'fail' needs a value"),
        ("fail=no spaces", "fault 'fail'"),
    ],
)
async def test_bad_fault_specs_are_400(reference_app, reference_client, spec, message) -> None:
    answer = await submit(reference_client, spec)
    assert answer.status_code == 400
    assert message in answer.json()["errors"]["X-Reference-Fault"]
    assert reference_app.stats.jobs_created == 0


async def test_settings_faults_apply_to_every_job_and_headers_override() -> None:
    app = create_app(settings=ReferenceSettings(job_seconds=0, faults="fail=llm_error"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
        plain = (await client.post(DECOMPOSE, json=GOAL)).json()["job_id"]
        assert (await client.get(f"/api/jobs/{plain}")).json()["error_type"] == "llm_error"
        with_header = await job_id_of(client, "fail=llm_timeout")
        job = (await client.get(f"/api/jobs/{with_header}")).json()
        assert job["error_type"] == "llm_timeout"
