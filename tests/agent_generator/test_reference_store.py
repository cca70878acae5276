"""The reference service's job store: in memory, or in a SQLite file that survives a restart."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from agent_generator.reference import ReferenceApp, ReferenceSettings, create_app
from agent_generator.reference.__main__ import main
from agent_generator.reference.faults import parse_faults
from agent_generator.reference.jobs import Job, Operation
from agent_generator.reference.store import JobStore, SqliteJobStore, StoreError, open_store
from tests.support.live import free_port, run_server

GOAL = {"description": "Search the web for cats and email a@b.com"}
DECOMPOSE = "/api/decompose-description"


def _job(store: JobStore, **changes: object) -> Job:
    fields: dict = {
        "id": store.new_id(),
        "operation": Operation.GENERATE,
        "created_at": time.monotonic(),
        "duration": 30.0,
        "faults": parse_faults("poll-503=2,retry-after=0.5,bad-result"),
        "result": {"agent_json": {"name": "A", "nodes": [{"id": "n1"}]}, "success": True},
        "idempotency_key": "key-1",
    }
    fields.update(changes)
    return Job(**fields)  # type: ignore[arg-type]


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM reference_job").fetchone()[0]


@pytest.fixture
def opened(tmp_path: Path):
    """``opened(**settings)`` -> a new app on ``tmp_path/jobs.sqlite3``; all closed after."""
    apps: list[ReferenceApp] = []

    def open_app(**settings: object) -> ReferenceApp:
        defaults: dict = {"job_seconds": 0.6, "max_wait_seconds": 5.0}
        app = create_app(
            settings=ReferenceSettings(
                store_path=tmp_path / "jobs.sqlite3", **{**defaults, **settings}
            )
        )
        apps.append(app)
        return app

    yield open_app
    for app in apps:
        app.close()


@asynccontextmanager
async def _client(app: ReferenceApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://reference.test") as c:
        yield c


def test_a_job_round_trips_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = SqliteJobStore(path=path, ttl_seconds=60)
    job = _job(first)
    failed = _job(first, idempotency_key=None, operation=Operation.DECOMPOSE, result=None)
    failed.fail_with(error_type="llm_timeout")
    cancelled = _job(first, idempotency_key="key-2")
    assert first.add(job) is job
    first.add(failed)
    first.add(cancelled)
    cancelled.cancel(time.monotonic())
    first.save(cancelled)
    first.close()

    second = SqliteJobStore(path=path, ttl_seconds=60)
    try:
        loaded = second.get(job.id)
        assert loaded is not None and loaded is not job
        assert (loaded.id, loaded.operation, loaded.duration) == (job.id, job.operation, 30.0)
        assert (loaded.faults, loaded.result, loaded.idempotency_key) == (
            job.faults,
            job.result,
            "key-1",
        )
        assert loaded.created_at == pytest.approx(job.created_at, abs=0.01)
        now = time.monotonic()
        assert loaded.stage(now) == job.stage(now)
        assert second.by_key("key-1") is loaded  # kept in memory once read
        again = second.get(failed.id)
        assert again is not None
        assert (again.error, again.error_type) == (failed.error, "llm_timeout")
        end = failed.created_at + failed.duration + 1
        assert again.as_json(end) == failed.as_json(end)
        frozen = second.by_key("key-2")
        assert frozen is not None
        assert frozen.stage(end) == cancelled.stage(end)
        assert frozen.stage(end).status == "cancelled"
        assert frozen.ends_at == pytest.approx(cancelled.ends_at, abs=0.01)
        assert second.get("no-such-job") is None
        assert second.by_key("no-such-key") is None
    finally:
        second.close()


def test_a_key_that_has_a_job_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    stores = [SqliteJobStore(path=path, ttl_seconds=60) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    kept: list[str] = []

    def submit(store: SqliteJobStore) -> None:
        job = _job(store, idempotency_key="same")
        barrier.wait()
        kept.append(store.add(job).id)

    threads = [threading.Thread(target=submit, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert len(kept) == 8
    assert len(set(kept)) == 1, kept
    assert _rows(path) == 1


def test_expired_rows_are_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = SqliteJobStore(path=path, ttl_seconds=60)
    now = time.monotonic()
    old = _job(store, created_at=now - 100, duration=30, idempotency_key="old")  # ended 70 s ago
    recent = _job(store, created_at=now - 50, duration=30, idempotency_key="recent")
    store.add(old)
    store.add(recent)
    other = SqliteJobStore(path=path, ttl_seconds=60)  # a restart before any sweep
    try:
        assert other.get(old.id) is None  # expired rows are not read back
        assert other.by_key("old") is None
        assert other.get(recent.id) is not None
        store.prune(now=now)
        assert _rows(path) == 1
        assert store.get(old.id) is None
        fresh = _job(store, idempotency_key="old", duration=1000)
        assert store.add(fresh) is fresh  # the key is free again
        store.prune(now=now + 100)  # recent ended 80 s before: gone; fresh runs on
        assert store.get(recent.id) is None
        assert _rows(path) == 1
    finally:
        store.close()
        other.close()


def test_no_store_path_keeps_jobs_in_memory(tmp_path: Path) -> None:
    store = open_store(path=None, ttl_seconds=60)
    assert type(store) is JobStore
    in_file = open_store(path=tmp_path / "j.sqlite3", ttl_seconds=60)
    in_file.close()
    assert isinstance(in_file, SqliteJobStore)
    assert ReferenceSettings().store_path is None


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        SqliteJobStore(path=tmp_path, ttl_seconds=60)  # a directory
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=7")
    with pytest.raises(StoreError, match="version 7"):
        SqliteJobStore(path=newer, ttl_seconds=60)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        SqliteJobStore(path=garbage, ttl_seconds=60)


def test_the_command_line_refuses_a_bad_store_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--store", str(tmp_path)])
    assert str(exit_.value).startswith(f"error: --store: {tmp_path}: cannot open the job store")
    assert "\n" not in str(exit_.value)


async def _wait_for(client: httpx.AsyncClient, job_id: str, done: Callable[[dict], bool]) -> dict:
    for _ in range(40):
        answer = await client.get(f"/api/jobs/{job_id}", params={"wait": 2})
        assert answer.status_code == 200, answer.text
        if done(body := answer.json()):
            return body
    raise AssertionError(f"job {job_id} never got there: {body}")


async def test_a_restarted_service_goes_on_with_a_running_job_submitted_once(opened) -> None:
    first = opened()
    headers = {"Idempotency-Key": "portal-job-1"}
    async with _client(first) as client:
        submitted = await client.post(DECOMPOSE, json=GOAL, headers=headers)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        running = await _wait_for(client, job_id, lambda job: job["status"] == "running")
    first.close()  # the process is gone; its jobs are in the file

    second = opened()
    async with _client(second) as client:
        answer = await client.get(f"/api/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        # Where it was, not started again: its start time came back with it.
        assert answer.json()["status"] != "queued"
        assert answer.json()["progress"]["percent"] >= running["progress"]["percent"]
        again = await client.post(DECOMPOSE, json=GOAL, headers=headers)
        assert again.status_code == 202, again.text
        assert again.json()["job_id"] == job_id
        done = await _wait_for(client, job_id, lambda job: job["status"] == "completed")
    assert done["result"]["steps"]
    assert (first.stats.jobs_created, second.stats.jobs_created) == (1, 0)
    assert (first.stats.submits, second.stats.submits) == (1, 1)


async def test_a_cancel_survives_a_restart(opened) -> None:
    first = opened(job_seconds=60)
    async with _client(first) as client:
        job_id = (await client.post(DECOMPOSE, json=GOAL)).json()["job_id"]
        assert (await client.delete(f"/api/jobs/{job_id}")).status_code == 204
    first.close()
    second = opened(job_seconds=60)
    async with _client(second) as client:
        answer = await client.get(f"/api/jobs/{job_id}")
    assert answer.json()["status"] == "cancelled"


async def test_a_restarted_service_forgets_jobs_that_expired(opened) -> None:
    first = opened(ttl_seconds=0)
    async with _client(first) as client:
        submitted = await client.post(
            DECOMPOSE, json=GOAL, headers={"X-Reference-Fault": "duration=0"}
        )
        job_id = submitted.json()["job_id"]
    first.close()
    second = opened(ttl_seconds=0)
    async with _client(second) as client:
        # A job of no duration kept 0 s after it ended: expired by the time anyone asks.
        answer = await client.get(f"/api/jobs/{job_id}")
    assert answer.status_code == 404


@pytest.mark.slow
def test_a_killed_reference_process_with_a_store_goes_on_after_a_restart(tmp_path: Path) -> None:
    store = tmp_path / "jobs.sqlite3"
    args = ["-m", "agent_generator.reference", "--host", "127.0.0.1", "--expose-stats"]
    args += ["--store", str(store), "--job-seconds", "3", "--max-wait-seconds", "5"]
    headers = {"Idempotency-Key": "portal-job-2"}
    port = free_port()
    with run_server(args=[*args, "--port", str(port)], port=port) as live:
        submitted = httpx.post(f"{live.url}{DECOMPOSE}", json=GOAL, headers=headers)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        for _ in range(20):
            before = httpx.get(f"{live.url}/api/jobs/{job_id}", params={"wait": 1}).json()
            if before["status"] == "running":
                break
        assert before["status"] == "running", before
        live.kill()  # SIGKILL: only the file is left

    port = free_port()
    with run_server(args=[*args, "--port", str(port)], port=port) as live:
        after = httpx.get(f"{live.url}/api/jobs/{job_id}").json()
        # Its start time crossed processes (as a Unix time): it is where it was, or further.
        assert after["status"] in {"running", "completed"}, after
        assert after["progress"]["percent"] >= before["progress"]["percent"]
        again = httpx.post(f"{live.url}{DECOMPOSE}", json=GOAL, headers=headers)
        assert again.json()["job_id"] == job_id
        for _ in range(20):
            after = httpx.get(f"{live.url}/api/jobs/{job_id}", params={"wait": 1}).json()
            if after["status"] == "completed":
                break
        assert after["status"] == "completed", after
        stats = httpx.get(f"{live.url}/__stats").json()
    assert (stats["submits"], stats["jobs_created"]) == (1, 0)
