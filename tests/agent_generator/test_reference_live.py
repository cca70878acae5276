"""The reference service under Daphne (``python -m agent_generator.reference``), over TCP."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.live import LiveProcess, ServerStartError, free_port, run_server

pytestmark = pytest.mark.slow

GOAL = {"description": "Search the web for cat news and email it to cats@example.com"}
DECOMPOSE = "/api/decompose-description"


def stats(live: LiveProcess) -> dict:
    return httpx.get(f"{live.url}/__stats", timeout=5).json()


async def test_a_job_end_to_end_with_long_poll(live_reference: LiveProcess) -> None:
    async with httpx.AsyncClient(base_url=live_reference.url, timeout=10) as client:
        assert (await client.get("/health")).json()["status"] == "healthy"
        before = stats(live_reference)
        submitted = await client.post(DECOMPOSE, json=GOAL, headers={"Idempotency-Key": "e2e:1"})
        assert submitted.status_code == 202
        job_id = submitted.json()["job_id"]
        seen = []
        while True:
            job = (await client.get(f"/api/jobs/{job_id}", params={"wait": 5})).json()
            seen.append(job["status"])
            if job["status"] == "completed":
                break
            assert len(seen) < 20, seen
        assert job["result"]["type"] == "instructions"
        after = stats(live_reference)
    assert after["polls"] - before["polls"] == len(seen)
    assert after["jobs_created"] - before["jobs_created"] == 1
    assert after["submits_by_key"]["e2e:1"] == 1
    assert len(seen) <= 7, "long-poll answers once per change"


async def test_reset_fault_is_a_transport_error(live_reference: LiveProcess) -> None:
    async with httpx.AsyncClient(base_url=live_reference.url, timeout=5) as client:
        submitted = await client.post(DECOMPOSE, json=GOAL, headers={"X-Reference-Fault": "reset"})
        job_id = submitted.json()["job_id"]
        for _ in range(2):
            with pytest.raises(httpx.TransportError):
                await client.get(f"/api/jobs/{job_id}")
        assert (await client.get("/health")).status_code == 200, "the server lives on"


async def test_slow_poll_beyond_the_client_timeout(live_reference: LiveProcess) -> None:
    async with httpx.AsyncClient(base_url=live_reference.url, timeout=0.3) as client:
        submitted = await client.post(
            DECOMPOSE, json=GOAL, headers={"X-Reference-Fault": "slow-poll=2"}
        )
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"/api/jobs/{submitted.json()['job_id']}")
        assert (await client.get("/health")).status_code == 200


async def test_slow_submit_retried_under_the_same_key(live_reference: LiveProcess) -> None:
    headers = {"X-Reference-Fault": "slow-submit=1", "Idempotency-Key": "slow:1"}
    async with httpx.AsyncClient(base_url=live_reference.url, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(DECOMPOSE, json=GOAL, headers=headers)
        retry = await client.post(DECOMPOSE, json=GOAL, headers=headers)
        assert retry.status_code == 202
        assert (await client.get(f"/api/jobs/{retry.json()['job_id']}")).status_code == 200
    counters = stats(live_reference)
    assert counters["submits_by_key"]["slow:1"] == 2


async def test_a_client_that_gives_up_on_a_long_poll(live_reference: LiveProcess) -> None:
    async with httpx.AsyncClient(base_url=live_reference.url, timeout=0.3) as client:
        submitted = await client.post(
            DECOMPOSE, json=GOAL, headers={"X-Reference-Fault": "duration=60"}
        )
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"/api/jobs/{submitted.json()['job_id']}", params={"wait": 5})
    for _ in range(40):
        if "client disconnected" in live_reference.output():
            break
        await asyncio.sleep(0.05)
    assert "client disconnected" in live_reference.output()


def test_cli_serves_with_settings_and_stops_on_sigterm() -> None:
    port = free_port()
    args = ["-m", "agent_generator.reference", "--port", str(port), "--no-long-poll"]
    args += ["--job-seconds", "30", "--faults", "poll-503=1"]
    with run_server(args=args, port=port) as live:
        assert f"agent-generator reference listening on http://127.0.0.1:{port}" in live.output()
        job_id = httpx.post(f"{live.url}{DECOMPOSE}", json=GOAL).json()["job_id"]
        assert httpx.get(f"{live.url}/api/jobs/{job_id}").status_code == 503
        start = time.monotonic()
        answer = httpx.get(f"{live.url}/api/jobs/{job_id}", params={"wait": 5})
        assert time.monotonic() - start < 3, "--no-long-poll ignores wait"
        assert answer.json()["status"] in {"queued", "running"}
        assert httpx.get(f"{live.url}/__stats").status_code == 404, "only with --expose-stats"
        live.stop()
        assert live.poll() == 0 or live.poll() == -signal.SIGTERM
        assert "request method=GET" in live.output()


def test_cli_rejects_a_bad_fault_spec() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent_generator.reference", "--faults", "explode"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown fault 'explode'" in done.stderr


def test_run_server_reports_a_server_that_dies() -> None:
    port = free_port()
    args = ["-c", "import sys; print('boom'); sys.exit(3)"]
    with (
        pytest.raises(ServerStartError, match="exited with 3") as failure,
        run_server(args=args, port=port, timeout=5),
    ):
        pass
    assert "boom" in str(failure.value)


def test_kill_is_immediate() -> None:
    port = free_port()
    with run_server(
        args=["-m", "agent_generator.reference", "--port", str(port)], port=port
    ) as live:
        live.kill()
        assert live.poll() == -signal.SIGKILL
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{live.url}/health", timeout=1)
