"""How fast a crashed runner's jobs are taken over, and what a runner's upkeep costs idle.

    python bench/takeover.py --db sqlite --runs 3 --jobs 100
    python bench/takeover.py --db postgres --runs 3 --jobs 100

With the default settings (``COPILOT_RUNNER_DEAD_SECONDS`` 5), against the reference service
(one long job per run):

- **peer, other host**: two ``runworker`` processes; the one holding the job is SIGKILLed;
  seconds from the kill until the survivor holds the job. Its heartbeat row is first marked
  as another host's, so only the heartbeat's age tells the survivor (as across machines);
- **peer, same host**: the same, the heartbeat left as it is: the survivor sees that the
  dead runner's pid is gone;
- **restart**: one ``runworker`` SIGKILLed, a new one started at once; seconds from the new
  process's start until it holds the job (Django's start-up included);
- **idle writes**: a runner (in this process, one database thread) holding ``--jobs`` jobs
  that report nothing for an hour; its INSERT/UPDATE/DELETE statements over ``--idle-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (
    PYTHON,
    BenchDatabase,
    Process,
    SetupError,
    command_line,
    django_setup,
    free_port,
    machine,
    portal_env,
    reference_args,
    running,
    table,
    wait_until,
)

GOAL = "Every morning at 8am, fetch the top tech news and email a summary to me@example.com"


def held_by(job_id, pid: int) -> bool:
    from copilot.jobs.models import GenerationJob

    return GenerationJob.objects.filter(
        pk=job_id, status="running", lease_owner__contains=f":{pid}:"
    ).exists()


def job_submit():
    from django.contrib.auth import get_user_model

    from copilot.jobs import services

    user, _ = get_user_model().objects.get_or_create(username="bench")
    return services.job_submit(user=user, kind="decompose", payload={"description": GOAL}).id


def runworker(env: dict[str, str]) -> Process:
    return Process(
        name="runworker", args=[PYTHON, "manage.py", "runworker", "agent-generator"], env=env
    )


def peer_takeover(env: dict[str, str], *, other_host: bool) -> float:
    from copilot.jobs.models import RunnerHeartbeat

    first, second = runworker(env), runworker(env)
    try:
        for worker in (first, second):
            wait_until(
                lambda w=worker: RunnerHeartbeat.objects.filter(pid=w.pid).exists(),
                seconds=30,
                what="the runners to start",
            )
        job_id = job_submit()
        wait_until(
            lambda: held_by(job_id, first.pid) or held_by(job_id, second.pid),
            seconds=30,
            what="a runner to submit the job",
        )
        dead, peer = (first, second) if held_by(job_id, first.pid) else (second, first)
        if other_host:
            RunnerHeartbeat.objects.filter(pid=dead.pid).update(host="another-host")
        dead.popen.kill()
        killed = time.monotonic()
        dead.popen.wait()
        wait_until(lambda: held_by(job_id, peer.pid), seconds=30, what="the takeover")
        return time.monotonic() - killed
    finally:
        first.stop()
        second.stop()


def restart_takeover(env: dict[str, str]) -> float:
    before = runworker(env)
    try:
        job_id = job_submit()
        wait_until(lambda: held_by(job_id, before.pid), seconds=30, what="the runner to submit")
        before.popen.kill()
        before.popen.wait()
    finally:
        before.stop()
    started = time.monotonic()
    after = runworker(env)
    try:
        wait_until(lambda: held_by(job_id, after.pid), seconds=30, what="the takeover")
        return time.monotonic() - started
    finally:
        after.stop()


class WriteCounter:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        if sql.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE", "WITH"}:
            self.writes.append(sql)
        return execute(sql, params, many, context)


def _install(counter: WriteCounter) -> None:
    from django.db import connection

    connection.execute_wrappers.append(counter)


def _remove(counter: WriteCounter) -> None:
    from django.db import connection

    connection.execute_wrappers.remove(counter)


async def idle_writes(*, jobs: int, seconds: float) -> tuple[int, float, int]:
    """(writes, seconds measured, jobs held) of one runner holding ``jobs`` quiet jobs."""
    from asgiref.sync import sync_to_async

    from copilot.jobs.models import GenerationJob, JobEvent
    from copilot.runner.runner import Runner

    # The takeover runs' jobs are done with: only this run's jobs are active.
    await sync_to_async(GenerationJob.objects.active().update)(status="cancelled", lease_owner="")
    ids = [await sync_to_async(job_submit)() for _ in range(jobs)]
    runner = Runner(db_threads=1)
    task = asyncio.create_task(runner.run())

    @sync_to_async
    def ready() -> bool:
        progressed = (
            JobEvent.objects.filter(job_id__in=ids, type="progress")
            .values("job_id")
            .distinct()
            .count()
        )
        return set(ids) <= set(runner._held) and progressed == jobs

    deadline = time.monotonic() + 120
    while not await ready():
        if time.monotonic() > deadline:
            raise SetupError("the runner did not pick the jobs up")
        await asyncio.sleep(0.1)
    counter = WriteCounter()
    await runner.db.call(None, _install, counter)
    started = time.monotonic()
    await asyncio.sleep(seconds)
    await runner.db.call(None, _remove, counter)
    measured = time.monotonic() - started
    held = len(runner._held)
    runner.stop()
    await task
    await sync_to_async(GenerationJob.objects.filter(pk__in=ids).update)(status="cancelled")
    return len(counter.writes), measured, held


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=3, help="takeovers of each kind")
    parser.add_argument("--jobs", type=int, default=100, help="jobs held by the idle runner")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    return parser


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (max {max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    database = BenchDatabase(kind=args.db)
    try:
        database.create()
        port = free_port()
        with running(
            name="reference",
            args=reference_args(port=port, job_seconds=3600),
            env=portal_env(database_url=database.url),
            port=port,
            ready="/health",
        ):
            env = portal_env(
                database_url=database.url,
                AGENT_GENERATOR_URL=f"http://127.0.0.1:{port}",
                COPILOT_MAX_ACTIVE_JOBS_PER_USER="100000",
                COPILOT_RUNNER_IN_PROCESS="false",
            )
            django_setup(env)
            other = [peer_takeover(env, other_host=True) for _ in range(args.runs)]
            same = [peer_takeover(env, other_host=False) for _ in range(args.runs)]
            restart = [restart_takeover(env) for _ in range(args.runs)]
            writes, seconds, held = asyncio.run(
                idle_writes(jobs=args.jobs, seconds=args.idle_seconds)
            )
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 1
    finally:
        from django.db import connections

        connections.close_all()
        database.drop()
    print(f"$ {command_line('bench/takeover.py', argv)}")
    print(machine())
    print()
    print(
        table(
            ["db", "measure", "seconds: median (max)"],
            [
                (args.db, "peer takeover after SIGKILL, other host", summary(other)),
                (args.db, "peer takeover after SIGKILL, same host", summary(same)),
                (args.db, "restart takeover, from the new process's start", summary(restart)),
            ],
        )
    )
    print()
    rate = writes / seconds
    print(
        table(
            ["db", "jobs held", "writes", "seconds", "writes/s", "target"],
            [(args.db, held, writes, f"{seconds:.1f}", f"{rate:.2f}", "<= 1")],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
