"""Scale-out, for real: two Daphne web servers, two runner processes, the reference Agent
Generator, PostgreSQL and a Redis of the test's own, all as separate processes.

Runs in the PostgreSQL pass of ``make test``; skipped where ``redis-server`` is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.test import Client

from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.tokens import api_token_create
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env, portal_process
from tests.support.sse_client import follow
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed"),
]

GOAL = "Every morning at 8am, fetch the top tech news and email a summary to me@example.com"
JOB_SECONDS = "3"


@contextlib.contextmanager
def own_redis(port: int) -> Iterator[subprocess.Popen]:
    """A Redis server of this test's own, so it can be stopped without touching anyone else's."""
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            import socket

            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        time.sleep(0.05)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


class Cluster:
    def __init__(self, *, reference, web, runners, redis_port: int, env: dict) -> None:
        self.reference = reference
        self.web = web
        self.runners = runners
        self.redis_port = redis_port
        self.env = env

    def stats(self) -> dict:
        return httpx.get(f"{self.reference.url}/__stats").json()


@pytest.fixture
def cluster(transactional_db) -> Iterator[Cluster]:
    redis_port, ref_port = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        stack.enter_context(own_redis(redis_port))
        reference = stack.enter_context(
            run_server(
                args=[
                    "-m", "agent_generator.reference", "--host", "127.0.0.1",
                    "--port", str(ref_port), "--job-seconds", JOB_SECONDS, "--expose-stats",
                ],
                port=ref_port,
            )
        )  # fmt: skip
        env = portal_env(
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            AGENT_GENERATOR_URL=reference.url,
            COPILOT_RUNNER_IN_PROCESS="false",
            COPILOT_HEARTBEAT_SECONDS="1",
            COPILOT_MAX_ACTIVE_JOBS_PER_USER="10",
        )
        web = []
        for _ in range(2):
            port = free_port()
            daphne = [
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "copilot.asgi:application",
            ]
            web.append(
                stack.enter_context(
                    run_server(args=daphne, port=port, env=env, ready_path="/admin/login/")
                )
            )
        runners = [
            stack.enter_context(portal_process("runworker", "agent-generator", env=env))
            for _ in range(2)
        ]
        yield Cluster(reference=reference, web=web, runners=runners, redis_port=redis_port, env=env)


def api_submit(base: str, token: str) -> str:
    response = httpx.post(
        f"{base}/api/jobs/",
        json={"kind": "decompose", "description": GOAL},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def session_for(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def assert_exact_log(job_id: str, events: list[dict]) -> None:
    stored = list(JobEvent.objects.filter(job_id=job_id).order_by("seq").values_list("seq", "type"))
    assert [(e["id"], e["type"]) for e in events] == stored
    assert [seq for seq, _ in stored] == list(range(1, len(stored) + 1))
    assert events[-1]["data"]["terminal"] is True


def test_jobs_submitted_on_one_server_stream_in_order_on_the_other(cluster, user):
    _, token = api_token_create(user=user, name="scale test")
    cookie = session_for(user)
    a, b = cluster.web[0].url, cluster.web[1].url
    job_ids = [api_submit(a, token) for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(lambda j: follow(servers=[b], job_id=j, cookie=cookie, timeout=60), job_ids)
        )
    for job_id, result in zip(job_ids, results, strict=True):
        assert result.finished
        assert_exact_log(job_id, result.events)
        assert GenerationJob.objects.get(pk=job_id).status == "completed"
    stats = cluster.stats()
    assert stats["submits"] == stats["jobs_created"] == 3


def test_a_killed_runner_s_jobs_are_completed_by_the_other(cluster, user):
    _, token = api_token_create(user=user, name="scale test")
    job_ids = [api_submit(cluster.web[0].url, token) for _ in range(4)]
    running = wait_for(
        lambda: (
            jobs
            if len(jobs := list(GenerationJob.objects.filter(pk__in=job_ids, status="running")))
            == 4
            else None
        ),
        seconds=20,
        what="all jobs to run",
    )
    owners = {job.lease_owner for job in running}
    victim = next(r for r in cluster.runners if any(f":{r.pid}:" in o for o in owners))
    victim_jobs = [job.pk for job in running if f":{victim.pid}:" in job.lease_owner]
    victim.kill()
    # Taken over within 10 s of the SIGKILL (PostgreSQL + Redis, the default dead interval).
    wait_for(
        lambda: (
            not GenerationJob.objects.filter(
                pk__in=victim_jobs, lease_owner__contains=f":{victim.pid}:"
            ).exists()
        ),
        seconds=10,
        what="the survivor to take the killed runner's jobs over",
    )
    wait_for(
        lambda: not GenerationJob.objects.active().filter(pk__in=job_ids).exists(),
        seconds=40,
        what="every job to end",
    )
    survivor = next(r for r in cluster.runners if r is not victim)
    for job in GenerationJob.objects.filter(pk__in=job_ids):
        assert job.status == "completed", (job.status, job.error_message)
    assert victim_jobs  # the killed runner really held jobs...
    for job_id in victim_jobs:  # ...and each was taken over, polled, and finished once
        events = list(JobEvent.objects.filter(job_id=job_id).values_list("data", flat=True))
        assert sum(1 for d in events if d.get("status") == "submitting") == 1
    stats = cluster.stats()
    assert stats["submits"] == stats["jobs_created"] == 4
    assert set(stats["submits_by_key"].values()) == {1}
    assert survivor.process.poll() is None


def test_a_stream_resumes_on_the_other_server_when_its_server_restarts(cluster, user):
    _, token = api_token_create(user=user, name="scale test")
    cookie = session_for(user)
    a, b = cluster.web
    job_id = api_submit(a.url, token)
    seen_progress = threading.Event()

    def on_event(event: dict) -> None:
        if event["type"] == "progress":
            seen_progress.set()

    killer = threading.Thread(
        target=lambda: (seen_progress.wait(20), a.kill()), name="kill-server-a"
    )
    killer.start()
    result = follow(
        servers=[a.url, b.url], job_id=job_id, cookie=cookie, timeout=60, on_event=on_event
    )
    killer.join()
    assert result.finished
    assert result.connections >= 2 and b.url in result.servers_used
    assert_exact_log(job_id, result.events)


def test_jobs_and_streams_get_through_a_redis_outage(cluster, user):
    _, token = api_token_create(user=user, name="scale test")
    cookie = session_for(user)
    job_id = api_submit(cluster.web[0].url, token)
    wait_for(
        lambda: GenerationJob.objects.filter(pk=job_id, status="running").exists(),
        seconds=20,
        what="the job to run",
    )
    followed: dict = {}
    first_event = threading.Event()

    def stream() -> None:
        followed["result"] = follow(
            servers=[cluster.web[1].url],
            job_id=job_id,
            cookie=cookie,
            timeout=60,
            on_event=lambda event: first_event.set(),
        )

    follower = threading.Thread(target=stream, name="follower")
    follower.start()
    assert first_event.wait(20)  # the stream is live when Redis goes away
    redis_pid = int(
        subprocess.run(
            ["pgrep", "-f", f"redis-server 127.0.0.1:{cluster.redis_port}"],
            capture_output=True,
            text=True,
        ).stdout.split()[0]
    )
    os.kill(redis_pid, signal.SIGTERM)  # Redis is gone for a few seconds, mid-job
    time.sleep(2.5)
    with own_redis(cluster.redis_port):
        follower.join(60)
        job = GenerationJob.objects.get(pk=job_id)
    result = followed["result"]
    assert job.status == "completed"  # the job's row never lived in Redis
    assert result.finished
    assert result.connections >= 2  # the outage cut the stream; it came back and caught up
    assert_exact_log(job_id, result.events)
    # Nothing crashed on the way: every web server and runner is still up.
    assert all(web.poll() is None for web in cluster.web)
    assert all(runner.process.poll() is None for runner in cluster.runners)
