"""How long after the database returns the runner's jobs catch up with the Agent Generator.

    .venv/bin/python bench/db_outage.py --db postgres --jobs 20 --outages 3,20
    .venv/bin/python bench/db_outage.py --db sqlite --jobs 20 --outages 3,23

For each outage length: a fresh database, the reference service (jobs of ``--job-seconds``)
and one ``runworker agent-generator``; ``--jobs`` jobs are submitted and, once all run
upstream (plus ``--settle`` seconds), the database is cut: on PostgreSQL the outage proxy
(``tests/support/db_outage.py``) drops every connection and refuses new ones, as a restart
or failover does; on SQLite a connection of the bench holds the write lock (``BEGIN
IMMEDIATE``; shorter than the 20 s busy timeout the runner's writes only wait).

At the end of the outage each job's upstream state is read from the service (status and
progress percent). **Catch-up** is the time from the end of the outage until the
database shows, for every job, that state or a later one (progress at least that percent;
ended if it had ended). Then every job is awaited to the end, and checked: completed, one
submit (``/__stats``), event log seq 1..N, and the runner process still up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

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
from tests.support.db_outage import database_cut

GOAL = "Every morning at 8am, fetch the top tech news and email a summary to me@example.com"
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


def submit(count: int) -> list[str]:
    from django.contrib.auth import get_user_model

    from copilot.jobs import services

    user, _ = get_user_model().objects.get_or_create(username="bench")
    return [
        str(services.job_submit(user=user, kind="decompose", payload={"description": GOAL}).id)
        for _ in range(count)
    ]


def db_states(job_ids: list[str]) -> dict[str, tuple[str, int, str]]:
    """job -> (status, progress percent, upstream job id), as the database has them."""
    from copilot.jobs.models import GenerationJob

    rows = GenerationJob.objects.filter(pk__in=job_ids).values_list(
        "id", "status", "progress", "upstream_job_id"
    )
    return {str(pk): (s, (p or {}).get("percent") or 0, u) for pk, s, p, u in rows}


def upstream_states(base: str, upstream_ids: dict[str, str]) -> dict[str, tuple[str, int]]:
    """job -> (status, progress percent), as the Agent Generator has them now."""
    states = {}
    with httpx.Client(base_url=base, timeout=5) as client:
        for job_id, upstream_id in upstream_ids.items():
            answer = client.get(f"/api/jobs/{upstream_id}").json()
            states[job_id] = (answer["status"], (answer.get("progress") or {}).get("percent", 0))
    return states


def caught_up(db: tuple[str, int, str], upstream: tuple[str, int]) -> bool:
    status, percent = upstream
    if status in TERMINAL:
        return db[0] in TERMINAL
    return db[0] in TERMINAL or db[1] >= percent


def one_run(
    *, database: BenchDatabase, jobs: int, outage: float, job_seconds: float, settle: float
) -> dict:
    """One outage against a fresh reference service and runner (the database is shared: the
    bench's own Django is set up once)."""
    port = free_port()
    with (
        running(
            name="reference",
            args=reference_args(port=port, job_seconds=job_seconds),
            env=portal_env(database_url=database.url),
            port=port,
            ready="/health",
        ),
        database_cut(database.url) as cut,
    ):
        base = f"http://127.0.0.1:{port}"
        env = portal_env(
            database_url=database.url,
            AGENT_GENERATOR_URL=base,
            COPILOT_MAX_ACTIVE_JOBS_PER_USER="100000",
            COPILOT_RUNNER_IN_PROCESS="false",
            LOG_LEVEL="INFO",
        )
        django_setup(env)  # (the first run's: settings are read once)
        runner = Process(
            name="runworker",
            args=[PYTHON, "manage.py", "runworker", "agent-generator"],
            env={**env, "DATABASE_URL": cut.url},
        )
        try:
            return measure(
                runner=runner,
                base=base,
                jobs=jobs,
                outage=outage,
                settle=settle,
                job_seconds=job_seconds,
                begin_outage=cut.begin,
            )
        finally:
            runner.stop()


def measure(
    *,
    runner: Process,
    base: str,
    jobs: int,
    outage: float,
    settle: float,
    job_seconds: float,
    begin_outage: Callable[[], Callable[[], None]],
) -> dict:
    from copilot.jobs.models import JobEvent

    job_ids = submit(jobs)
    wait_until(
        lambda: all(s[0] == "running" for s in db_states(job_ids).values()),
        seconds=60,
        what="every job to run",
        step=0.05,
    )
    time.sleep(settle)
    end_outage = begin_outage()
    time.sleep(outage)
    end_outage()
    ended = time.monotonic()
    upstream_ids = {job_id: s[2] for job_id, s in db_states(job_ids).items()}
    snapshot = upstream_states(base, upstream_ids)
    caught: dict[str, float] = {}
    deadline = ended + job_seconds + 120
    while len(caught) < len(job_ids) and time.monotonic() < deadline:
        now = time.monotonic()
        for job_id, state in db_states(job_ids).items():
            if job_id not in caught and caught_up(state, snapshot[job_id]):
                caught[job_id] = now - ended
        time.sleep(0.05)
    if len(caught) < len(job_ids):
        raise SetupError(f"{len(job_ids) - len(caught)} jobs never caught up\n{runner.output()}")
    wait_until(
        lambda: all(s[0] in TERMINAL for s in db_states(job_ids).values()),
        seconds=job_seconds + 120,
        what="every job to end",
        step=0.2,
    )
    states = db_states(job_ids)
    stats = httpx.get(f"{base}/__stats", timeout=5).json()
    gap_free = all(
        list(JobEvent.objects.filter(job_id=j).order_by("seq").values_list("seq", flat=True))
        == list(range(1, JobEvent.objects.filter(job_id=j).count() + 1))
        for j in job_ids
    )
    output = runner.log_path.read_text(errors="replace")
    for line in output.splitlines():
        if "copilot.runner" in line and ("WARNING" in line or "database back" in line):
            print(f"  runner: {line}", file=sys.stderr)
    return {
        "outage": outage,
        "jobs": jobs,
        "ended upstream": sum(1 for s in snapshot.values() if s[0] in TERMINAL),
        "catch-up median": statistics.median(caught.values()),
        "catch-up max": max(caught.values()),
        "completed": sum(1 for s in states.values() if s[0] == "completed"),
        "submits": stats["submits"],
        "created": stats["jobs_created"],
        "gap-free": gap_free,
        "runner up": runner.alive(),
        "outage logs": output.count("database unavailable"),
        "resumed": output.count("runner resumes job="),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--jobs", type=int, default=20, help="running jobs (default: %(default)r)")
    parser.add_argument(
        "--outages",
        default="3,20",
        help="outage lengths in seconds, comma-separated (default: %(default)r)",
    )
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=40.0,
        help="how long each job runs upstream (default: %(default)r)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds between every job running and the cut (default: %(default)r)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    rows = []
    database = BenchDatabase(kind=args.db)
    try:
        database.create()
        for outage in [float(x) for x in args.outages.split(",") if x.strip()]:
            result = one_run(
                database=database,
                jobs=args.jobs,
                outage=outage,
                job_seconds=args.job_seconds,
                settle=args.settle,
            )
            rows.append(result)
            print(result, file=sys.stderr)
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 1
    finally:
        from django.db import connections

        connections.close_all()
        database.drop()
    print(f"$ {command_line('bench/db_outage.py', argv)}")
    print(machine())
    print()
    headers = list(rows[0]) if rows else []
    print(
        table(
            ["db", *headers],
            [
                [args.db, *(f"{v:.2f}" if isinstance(v, float) else v for v in row.values())]
                for row in rows
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
