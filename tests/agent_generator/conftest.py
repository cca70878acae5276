"""Fixtures for the Agent Generator tests: the reference service, in-process and live.

- ``reference_app``: a fresh reference service whose jobs run 0.4 s;
- ``reference_client``: an ``httpx.AsyncClient`` on it through ``httpx.ASGITransport``;
- ``live_reference``: the service under Daphne in a subprocess (module-scoped), started
  with ``--expose-stats`` so ``GET {url}/__stats`` shows its counters; it yields the
  :class:`tests.support.live.LiveProcess` (``.url``, ``.pid``, ``.output()``);
- ``run_job``: submit to ``reference_client`` and long-poll until the job ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from agent_generator.reference import ReferenceApp, ReferenceSettings, create_app
from tests.support.live import LiveProcess, free_port, run_server

REFERENCE_BASE_URL = "http://reference.test"
TERMINAL = {"completed", "failed", "cancelled"}

RunJob = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def reference_app() -> ReferenceApp:
    return create_app(
        settings=ReferenceSettings(job_seconds=0.4, ttl_seconds=60.0, max_wait_seconds=5.0)
    )


@pytest.fixture
async def reference_client(reference_app: ReferenceApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=reference_app)
    async with httpx.AsyncClient(transport=transport, base_url=REFERENCE_BASE_URL) as client:
        yield client


@pytest.fixture
def run_job(reference_client: httpx.AsyncClient) -> RunJob:
    """``await run_job(path, body, faults="duration=0")`` -> the final Job object."""

    async def run(path: str, body: dict[str, Any], *, faults: str = "duration=0") -> dict:
        headers = {"X-Reference-Fault": faults} if faults else {}
        submitted = await reference_client.post(path, json=body, headers=headers)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        for _ in range(50):
            answer = await reference_client.get(f"/api/jobs/{job_id}", params={"wait": 5})
            assert answer.status_code == 200, answer.text
            job = answer.json()
            if job["status"] in TERMINAL:
                return job
        raise AssertionError(f"job {job_id} did not end: {job}")

    return run


@pytest.fixture(scope="module")
def live_reference() -> Iterator[LiveProcess]:
    port = free_port()
    args = ["-m", "agent_generator.reference", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--job-seconds", "0.6", "--max-wait-seconds", "5", "--expose-stats"]
    with run_server(args=args, port=port) as live:
        yield live
