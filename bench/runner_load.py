"""M concurrent jobs on ONE runner against the reference Agent Generator (long-poll on).

    .venv/bin/python bench/runner_load.py --jobs 100,500,2000 [--job-seconds 40]
        [--ramp 20] [--db postgres|sqlite]

For each M, a fresh reference service (``python -m agent_generator.reference
--job-seconds S --expose-stats``, a live server on a free port) and a fresh
:class:`copilot.runner.runner.Runner` in this process with ``COPILOT_RUNNER_CONCURRENCY=M``, on a
throw-away database. M jobs are stored up front, held back, and released to the runner at
an even rate over ``--ramp`` seconds (``runner.wake``), as users would submit them; every
job then runs for ``--job-seconds`` on the service. Measured until every job has ended:

- **CPU per poll**: this process's CPU time (minus the thread that releases jobs) divided
  by the polls the reference counted (``GET /__stats``).
- **database writes per job**: on PostgreSQL, the deltas of ``n_tup_ins`` + ``n_tup_upd``
  in ``pg_stat_user_tables`` for the job and event tables (leases, renewals and releases
  included); on SQLite, the events stored plus one job-row update per event (claims and
  lease renewals are not counted there).
- **poll drift**: how late each poll was sent compared with when the polling loop planned
  it. The runner's HTTP transport is a bench-only subclass that stamps every request (start,
  end, ``?wait=W``, the job's status and progress). From consecutive requests of one job:
  after a submit, an answer that changed the job, or a poll the service held for its whole
  ``wait`` (long-poll), the next poll is planned *at once* (at the answer); after an early,
  unchanged answer it is planned ``W`` after the previous poll started (``W`` is the
  planned interval: the caps, 25 s and the request timeout, are kept above it). Drift is
  the actual start minus that plan; it includes the database write a change costs before
  the next poll, which is the runner's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (
    BenchDatabase,
    SetupError,
    command_line,
    django_setup,
    free_port,
    machine,
    ms,
    percentile,
    portal_env,
    raise_nofile,
    reference_args,
    running,
    table,
)

HELD_FRACTION = 0.9  # the polling loop's own rule (agent_generator.polling.HELD_FRACTION)


@dataclass
class Request:
    job: str  # upstream job id ("" for a submit)
    submit: bool
    wait: float
    start: float
    end: float = 0.0
    state: tuple = ()


@dataclass
class Recorder:
    requests: list[Request] = field(default_factory=list)


class RecordingTransport(httpx.AsyncHTTPTransport):
    """Stamps every request of the runner's client (bench only; behaviour unchanged)."""

    def __init__(self, *, recorder: Recorder, **kwargs) -> None:
        super().__init__(**kwargs)
        self.recorder = recorder

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        submit = request.method == "POST"
        wait = float(request.url.params.get("wait") or 0)
        entry = Request(job="", submit=submit, wait=wait, start=time.monotonic())
        response = await super().handle_async_request(request)
        await response.aread()
        entry.end = time.monotonic()
        with contextlib.suppress(ValueError, AttributeError):
            body = json.loads(response.content)
            entry.job = body.get("job_id", "") if submit else path.rsplit("/", 1)[1]
            entry.state = (body.get("status"), json.dumps(body.get("progress"), sort_keys=True))
        if request.method in ("GET", "POST"):
            self.recorder.requests.append(entry)
        return response


def drifts(requests: list[Request], *, after: str = "any") -> list[float]:
    """Actual minus planned start of every poll (see the module docstring).

    ``after="news"`` keeps only the polls that follow a submit or a changed answer (their
    drift includes the database write of that change), ``"quiet"`` only the others.
    """
    by_job: dict[str, list[Request]] = {}
    for entry in requests:
        if entry.job:
            by_job.setdefault(entry.job, []).append(entry)
    out = []
    for entries in by_job.values():
        entries.sort(key=lambda e: e.start)
        before: tuple = ()
        for index in range(1, len(entries)):
            previous, current = entries[index - 1], entries[index]
            if current.submit:
                continue
            # The polling loop's rule: a status change, or a progress change after progress
            # was first seen, is news; news and held polls are followed by a poll at once.
            news = previous.submit or (
                bool(before)
                and (
                    previous.state[:1] != before[:1]
                    or (previous.state[1:] != before[1:] and before[1:] != ("null",))
                )
            )
            took = previous.end - previous.start
            held = previous.wait > 0 and took >= HELD_FRACTION * previous.wait
            planned = previous.end if (news or held) else previous.start + previous.wait
            if after == "any" or (after == "news") == news:
                out.append(current.start - planned)
            before = previous.state
    return out


class ShardedClient:
    """Bench-only prototype of a fix: K clients with K small pools instead of one big pool.

    httpcore's pool scans every connection it holds for each request, so one pool of M
    connections costs O(M) per poll. Jobs are spread over the clients by their
    ``Idempotency-Key`` (the runner's ``<job id>:<attempt>``); only ``run()`` is used by
    the runner.
    """

    def __init__(self, clients: list) -> None:
        self.clients = clients

    async def __aenter__(self) -> ShardedClient:
        for client in self.clients:
            await client.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for client in self.clients:
            await client.__aexit__(*exc_info)

    async def run(self, **kwargs):
        key = kwargs.get("idempotency_key") or ""
        return await self.clients[hash(key) % len(self.clients)].run(**kwargs)


@dataclass
class RunResult:
    jobs: int
    ended: dict[str, int]
    wall: float
    polls: int
    submits: int
    cpu: float
    writes: float
    writes_note: str
    drift: list[float]
    drift_news: list[float]
    drift_quiet: list[float]
    lag: list[float]


async def loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        await asyncio.sleep(0.05)
        lags.append(time.monotonic() - started - 0.05)


def table_counts(db: BenchDatabase) -> int:
    """Rows inserted + updated in the job and event tables so far (PostgreSQL statistics)."""
    import psycopg

    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0) FROM pg_stat_user_tables "
            "WHERE relname IN ('copilot_generationjob', 'copilot_jobevent')"
        ).fetchone()
    return int(row[0])


async def run_one(*, jobs: int, args: argparse.Namespace) -> RunResult:
    from django.db import connections

    from agent_generator import AgentGeneratorClient
    from copilot.jobs.models import JobEvent
    from copilot.runner import runner as runner_module
    from copilot.runner.database import thread_count
    from copilot.runner.upstream import poll_policy, ssl_context

    port = free_port()
    ref_args = reference_args(port=port, job_seconds=args.job_seconds)
    with running(name="reference", args=ref_args, env=dict(os.environ), port=port, ready="/health"):
        base = f"http://127.0.0.1:{port}"
        from django.conf import settings

        settings.AGENT_GENERATOR_URL = base
        settings.COPILOT_RUNNER_CONCURRENCY = jobs
        ids = await asyncio.to_thread(jobs_store, count=jobs)
        recorder = Recorder()

        def one_client(size: int) -> AgentGeneratorClient:
            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
            transport = RecordingTransport(
                recorder=recorder, verify=ssl_context(), limits=limits, retries=0
            )
            return AgentGeneratorClient(
                base_url=base,
                timeout=settings.AGENT_GENERATOR_REQUEST_TIMEOUT,
                transport=transport,
                policy=poll_policy(),
            )

        def client_factory() -> AgentGeneratorClient | ShardedClient:
            if args.shards <= 1:
                # As copilot.runner.runner does: the runner calls this once per shard of
                # CLIENT_SHARD_SIZE jobs (a single client before commit 35ed02c).
                return one_client(min(jobs, getattr(runner_module, "CLIENT_SHARD_SIZE", jobs)))
            size = -(-jobs // args.shards)
            return ShardedClient([one_client(size) for _ in range(args.shards)])

        if args.shard_size > 0:
            # Bench-only override of the runner's jobs per HTTP client (its CLIENT_SHARD_SIZE).
            runner_module.CLIENT_SHARD_SIZE = args.shard_size
        args.shard_size_used = getattr(runner_module, "CLIENT_SHARD_SIZE", jobs)
        # --db-threads: bench-only override of the runner's database threads (each its own
        # connection); a job's calls stay on one thread, so its writes stay ordered.
        runner = runner_module.Runner(
            concurrency=jobs, client_factory=client_factory, db_threads=args.db_threads or None
        )
        args.db_threads_used = args.db_threads or thread_count()
        writes_before = table_counts(args.database) if args.db == "postgres" else 0
        cpu_before = _process_cpu()
        release_cpu: list[float] = []
        started = time.monotonic()
        runner_task = asyncio.create_task(runner.run())
        stop = asyncio.Event()
        lags: list[float] = []
        lag_task = asyncio.create_task(loop_lag(stop, lags))
        releaser = threading.Thread(
            target=jobs_release,
            kwargs={"ids": ids, "ramp": args.ramp, "runner": runner, "cpu": release_cpu},
            daemon=True,
        )
        releaser.start()
        deadline = started + args.ramp + args.job_seconds * 3 + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            left = await asyncio.to_thread(_active_count)
            if left == 0 and not releaser.is_alive():
                break
        wall = time.monotonic() - started
        cpu = _process_cpu() - cpu_before - sum(release_cpu)
        stop.set()
        await lag_task
        runner.stop()
        await runner_task
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"{base}/__stats")).json()
        ended = await asyncio.to_thread(_statuses)
        if args.db == "postgres":
            await asyncio.sleep(1.0)
            writes = (table_counts(args.database) - writes_before) / jobs
            note = "pg_stat_user_tables n_tup_ins + n_tup_upd (jobs + events)"
        else:
            events = await asyncio.to_thread(JobEvent.objects.count)
            writes = 2 * (events - jobs) / jobs
            note = "events + one job update per event (claims and renewals not counted)"
        await asyncio.to_thread(connections.close_all)
    if args.dump:
        rows = [
            [e.job, e.submit, e.wait, e.start - started, e.end - started, list(e.state)]
            for e in recorder.requests
        ]
        await asyncio.to_thread(Path(args.dump).write_text, json.dumps(rows))
    return RunResult(
        jobs=jobs,
        ended=ended,
        wall=wall,
        polls=stats["polls"],
        submits=stats["submits"],
        cpu=cpu,
        writes=writes,
        writes_note=note,
        drift=drifts(recorder.requests),
        drift_news=drifts(recorder.requests, after="news"),
        drift_quiet=drifts(recorder.requests, after="quiet"),
        lag=lags,
    )


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def jobs_store(*, count: int) -> list:
    """``count`` queued jobs, each with its first event, held back from the runner for now."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from copilot.jobs.models import GenerationJob, JobEvent, RunnerHeartbeat

    user, _ = get_user_model().objects.get_or_create(username="bench")
    GenerationJob.objects.all().delete()
    later = timezone.now() + timedelta(days=1)
    jobs = [
        GenerationJob(
            owner=user,
            kind="decompose",
            request={"description": "Every morning email me the weather in Paris"},
            lease_owner="held-back",
            lease_expires_at=later,
            last_event_seq=1,
        )
        for _ in range(count)
    ]
    with transaction.atomic():
        # "held-back" looks alive to the runner (a heartbeat a day ahead) until released.
        RunnerHeartbeat.objects.update_or_create(owner="held-back", defaults={"seen_at": later})
        GenerationJob.objects.bulk_create(jobs, batch_size=500)
        JobEvent.objects.bulk_create(
            [JobEvent(job=j, seq=1, type="status", data={"status": "queued"}) for j in jobs],
            batch_size=500,
        )
    connection.close()
    return [job.id for job in jobs]


def jobs_release(*, ids: list, ramp: float, runner, cpu: list[float]) -> None:
    """Release the held-back jobs at an even rate over ``ramp`` s, waking the runner each time."""
    from django.db import connection

    from copilot.jobs.models import GenerationJob

    started = time.monotonic()
    cpu_start = time.thread_time()
    step = ramp / max(len(ids), 1)
    for index, job_id in enumerate(ids):
        delay = started + index * step - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        GenerationJob.objects.filter(pk=job_id).update(lease_owner="", lease_expires_at=None)
        runner.wake(job_id)
    connection.close()
    cpu.append(time.thread_time() - cpu_start)


def _active_count() -> int:
    from django.db import connection

    from copilot.jobs.models import GenerationJob

    count = GenerationJob.objects.active().count()
    connection.close()
    return count


def _statuses() -> dict[str, int]:
    from django.db import connection
    from django.db.models import Count

    from copilot.jobs.models import GenerationJob

    rows = GenerationJob.objects.values("status").annotate(n=Count("id"))
    out = {row["status"]: row["n"] for row in rows}
    connection.close()
    return out


def report(results: list[RunResult], *, command: str, args: argparse.Namespace) -> str:
    rows = []
    for r in results:
        ended = ", ".join(f"{k} {v}" for k, v in sorted(r.ended.items()))
        rows.append(
            [
                r.jobs,
                ended,
                f"{r.wall:.0f}",
                r.polls,
                f"{r.polls / r.jobs:.1f}",
                f"{r.cpu:.1f}",
                f"{r.cpu / max(r.polls, 1) * 1000:.2f}",
                f"{r.writes:.1f}",
                ms(percentile(r.drift, 0.5)),
                ms(percentile(r.drift, 0.99)),
                ms(max(r.drift, default=float("nan"))),
                ms(percentile(r.lag, 0.99)),
            ]
        )
    headers = [
        "jobs",
        "ended",
        "wall s",
        "polls",
        "polls/job",
        "CPU s",
        "CPU ms/poll",
        "DB writes/job",
        "drift p50 ms",
        "drift p99 ms",
        "drift max ms",
        "loop lag p99 ms",
    ]
    lines = [f"$ {command}", machine(), "", table(headers, rows), ""]
    for r in results:
        lines.append(
            f"{r.jobs} jobs: drift after a submit or a change (includes its database write) "
            f"p50 {ms(percentile(r.drift_news, 0.5))} / p99 {ms(percentile(r.drift_news, 0.99))}"
            f" ms over {len(r.drift_news)} polls; after a quiet answer p50 "
            f"{ms(percentile(r.drift_quiet, 0.5))} / p99 {ms(percentile(r.drift_quiet, 0.99))} "
            f"ms over {len(r.drift_quiet)} polls"
        )
    lines.append(
        f"jobs of {args.job_seconds:g} s, released over {args.ramp:g} s; database {args.db}; "
        f"DB writes: {results[0].writes_note if results else '-'}; client shards "
        f"{args.shards}; jobs per client {getattr(args, 'shard_size_used', '-')}; "
        f"runner database threads {getattr(args, 'db_threads_used', '-')}; "
        f"event loop {getattr(args, 'loop_used', '-')}; "
        f"sniffio importable: {importlib.util.find_spec('sniffio') is not None}"
    )
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1 or max(sizes) > 5000:
        raise argparse.ArgumentTypeError("job counts must be between 1 and 5000")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/runner_load.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--jobs",
        type=_sizes,
        default=_sizes("100,500,2000"),
        help="concurrent job counts, one run each (default: 100,500,2000)",
    )
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=40.0,
        help="how long each job runs on the service (default: %(default)r)",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=20.0,
        help="seconds over which the jobs arrive (default: %(default)r)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        help="bench-only prototype of the client shards the runner has had since commit "
        "35ed02c: spread jobs over this many clients (default: %(default)r)",
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        default=0,
        help="bench-only: override the runner's jobs per HTTP client (CLIENT_SHARD_SIZE); 0 "
        "keeps its own (default: %(default)r)",
    )
    parser.add_argument(
        "--db-threads",
        type=int,
        default=0,
        help="bench-only: override the runner's database threads; 0 keeps its own "
        "(default: %(default)r)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=0.0,
        metavar="MS",
        help="bench-only: the interpreter's GIL switch interval in ms (sys.setswitchinterval; "
        "0 keeps Python's 5 ms)",
    )
    parser.add_argument(
        "--loop",
        choices=["runner", "asyncio"],
        default="runner",
        help="the event loop: the one the runner's thread uses (uvloop when installed) "
        "or asyncio's own (default: %(default)r)",
    )
    parser.add_argument(
        "--dump",
        metavar="FILE",
        help="write every recorded request (job, submit, wait, start, end, state) as JSON, "
        "times relative to the run's start, for a closer look (last run only)",
    )
    parser.add_argument(
        "--db",
        choices=["postgres", "sqlite"],
        default="postgres",
        help="database (default: %(default)r)",
    )
    return parser


async def main_async(args: argparse.Namespace) -> list[RunResult]:
    results = []
    for count in args.jobs:
        print(f"== {count} jobs", flush=True)
        result = await run_one(jobs=count, args=args)
        print(
            f"  ended {result.ended} in {result.wall:.0f} s, polls {result.polls}, "
            f"drift p99 {ms(percentile(result.drift, 0.99))} ms",
            flush=True,
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    raise_nofile(20000)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval / 1000)
    database = BenchDatabase(kind=args.db)
    args.database = database
    try:
        database.create()
        env = portal_env(
            database_url=database.url,
            COPILOT_RUNNER_IN_PROCESS="false",
            COPILOT_RUNNER_CONCURRENCY=str(max(args.jobs)),
            COPILOT_MAX_ACTIVE_JOBS_PER_USER="100000",
            AGENT_GENERATOR_URL="http://127.0.0.1:9",
            AGENT_GENERATOR_REQUEST_TIMEOUT="60",
            AGENT_GENERATOR_POLL_INTERVAL="2",
            AGENT_GENERATOR_POLL_MAX_INTERVAL="20",
        )
        django_setup(env)
        from copilot.runner.thread import loop_factory

        # The runner's own thread runs on loop_factory() (uvloop when installed).
        factory = loop_factory() if args.loop == "runner" else None
        args.loop_used = "asyncio" if factory is None else factory.__module__.split(".")[0]
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            results = loop_runner.run(main_async(args))
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        database.drop()
    print()
    print(report(results, command=command_line("bench/runner_load.py", argv), args=args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
