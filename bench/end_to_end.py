"""From the user's click to the browser: submit-to-first-event and completion-to-browser delay.

    .venv/bin/python bench/end_to_end.py [--jobs 6] [--job-seconds 60] [--stagger 10]
        [--scale-out [--redis-url redis://127.0.0.1:6379/13]]

Three set-ups run side by side, each with its own reference Agent Generator (a live
server, ``python -m agent_generator.reference --job-seconds S``) on a free port:

- **ours, long-poll**: the portal as shipped (``daphne copilot.asgi:application``, SQLite, the
  embedded runner, default poll policy) against a reference that holds ``?wait=`` polls;
- **ours, no long-poll**: the same against ``--no-long-poll``;
- **fixed 10 s (seed)**: the seed platform's way, a plain poll every 10 s (no browser leg: the
  delay is when the server itself learns the news, a lower bound for its browser). Its
  jobs last ``--job-seconds`` minus 0-10 s each (the reference's ``duration`` fault), so
  that they do not all end on its 10 s beat.

With ``--scale-out`` both "ours" set-ups run as past one machine instead: PostgreSQL, the
Redis channel layer (one Redis database each: ``--redis-url``'s and the next) and a
separate ``manage.py runworker agent-generator`` process beside the web server
(``COPILOT_RUNNER_IN_PROCESS=false``), so every event crosses processes through Redis.

Each job is submitted through the portal's JSON API (``POST /api/jobs/``, bearer token) at a
random moment of the first ``--stagger`` seconds, and its SSE stream
(``GET /jobs/<id>/events``, session cookie) is opened right after, as the job page does.
Times are wall-clock (``time.time()``): the reference logs ``job created id=…`` with a
millisecond timestamp, so a job completes on the service at that time + ``--job-seconds``.

- submit -> first event: POST sent until the stream's first event (the snapshot);
- submit -> running: POST sent until the ``running`` event (the service accepted the job);
- completion -> browser: the job's end on the service until the terminal event arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (
    PYTHON,
    ROOT,
    BenchDatabase,
    Process,
    SetupError,
    command_line,
    daphne_args,
    free_port,
    machine,
    percentile,
    portal_env,
    redis_forget,
    reference_args,
    running,
    table,
)

GOAL = "Every weekday at 8am email me a summary of the top 5 news articles about solar power"
FIXED_INTERVAL = 10.0

CREDENTIALS = """
from django.contrib.auth import get_user_model
from django.test import Client
from copilot.jobs.tokens import api_token_create
user, _ = get_user_model().objects.get_or_create(username="bench")
_, key = api_token_create(user=user, name="bench")
client = Client()
client.force_login(user)
print(key, client.cookies["sessionid"].value)
"""


@dataclass
class JobTimes:
    submitted: float = 0.0
    first_event: float = 0.0
    running: float = 0.0
    terminal: float = 0.0
    upstream: str = ""
    status: str = ""
    duration: float = 0.0  # the job's own length on the service, when set per job


@dataclass
class Setup:
    name: str
    jobs: list[JobTimes] = field(default_factory=list)
    polls: int = 0
    completed: dict[str, float] = field(default_factory=dict)  # upstream id -> end time


def created_times(log: str) -> dict[str, float]:
    """``job created id=X`` lines of a reference log -> X: epoch seconds of the line."""
    out = {}
    for line in log.splitlines():
        if "job created id=" not in line:
            continue
        stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        job_id = line.split("job created id=", 1)[1].split()[0]
        out[job_id] = stamp
    return out


async def sse_follow(*, port: int, job_id: str, cookie: str, times: JobTimes) -> None:
    """Read the job's stream until its terminal event, noting when each milestone arrives."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Cookie: sessionid={cookie}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    event = ""
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            now = time.time()
            text = line.decode(errors="replace").rstrip("\r\n")
            if text.startswith("event: "):
                event = text[7:]
                times.first_event = times.first_event or now
            elif text.startswith("data: ") and event:
                try:
                    data = json.loads(text[6:])
                except ValueError:
                    continue  # a data line split by chunked framing; never a milestone
                if data.get("upstream_job_id"):
                    times.upstream = data["upstream_job_id"]
                if data.get("status") == "running" and not times.running:
                    times.running = now
                if data.get("terminal"):
                    times.terminal = now
                    times.status = data.get("status", "")
                    return
    finally:
        writer.close()


@dataclass
class Started:
    """A set-up's servers, up and ready before any measurement starts."""

    setup: Setup
    ref_port: int
    reference: Process
    web_port: int = 0
    key: str = ""
    cookie: str = ""


def ours_start(
    *,
    stack: contextlib.ExitStack,
    setup: Setup,
    long_poll: bool,
    args: argparse.Namespace,
    index: int,
) -> Started:
    """A fresh database with a user, its API key and session; a reference; the portal."""
    db = BenchDatabase(kind="postgres" if args.scale_out else "sqlite")
    stack.callback(db.drop)
    db.create()
    ref_port, web_port = free_port(), free_port()
    extra = {}
    if args.scale_out:
        base, _, number = args.redis_url.rpartition("/")
        redis_url = f"{base}/{int(number or 0) + index}"
        stack.callback(redis_forget, redis_url)
        extra = {"REDIS_URL": redis_url, "COPILOT_RUNNER_IN_PROCESS": "false"}
    env = portal_env(
        database_url=db.url,
        AGENT_GENERATOR_URL=f"http://127.0.0.1:{ref_port}",
        COPILOT_MAX_ACTIVE_JOBS_PER_USER="1000",
        **extra,
    )
    answer = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", CREDENTIALS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if answer.returncode:
        raise SetupError(f"credentials: {answer.stderr}")
    key, cookie = answer.stdout.split()[-2:]
    ref = reference_args(port=ref_port, job_seconds=args.job_seconds, long_poll=long_poll)
    reference = stack.enter_context(
        running(name="reference", args=ref, env=env, port=ref_port, ready="/health")
    )
    web = daphne_args(app="copilot.asgi:application", port=web_port)
    stack.enter_context(running(name="portal", args=web, env=env, port=web_port))
    if args.scale_out:
        runner = [PYTHON, "manage.py", "runworker", "agent-generator"]
        stack.enter_context(running(name="runner", args=runner, env=env, port=None))
    return Started(setup, ref_port, reference, web_port, key, cookie)


def fixed_start(*, stack: contextlib.ExitStack, setup: Setup, args: argparse.Namespace) -> Started:
    port = free_port()
    ref = reference_args(port=port, job_seconds=args.job_seconds, long_poll=False)
    env = portal_env(database_url="sqlite:///unused")
    reference = stack.enter_context(
        running(name="reference", args=ref, env=env, port=port, ready="/health")
    )
    return Started(setup, port, reference)


async def ours(*, started: Started, args: argparse.Namespace, delays: list[float]) -> None:
    """Submit through the portal's API, then follow each job's stream as the job page does."""
    base = f"http://127.0.0.1:{started.web_port}"
    headers = {"Authorization": f"Bearer {started.key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:

        async def one(delay: float) -> JobTimes:
            times = JobTimes()
            await asyncio.sleep(delay)
            times.submitted = time.time()
            body = {"kind": "decompose", "description": GOAL}
            reply = await http.post("/api/jobs/", json=body)
            if reply.status_code != 201:
                raise SetupError(f"submit answered {reply.status_code}: {reply.text}")
            job_id = reply.json()["id"]
            await sse_follow(
                port=started.web_port, job_id=job_id, cookie=started.cookie, times=times
            )
            return times

        started.setup.jobs = list(await asyncio.gather(*(one(d) for d in delays)))


async def fixed(*, started: Started, args: argparse.Namespace, delays: list[float]) -> None:
    """The seed's way: submit, then one plain poll every 10 s until the job has ended."""
    base = f"http://127.0.0.1:{started.ref_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def one(delay: float) -> JobTimes:
            # A per-job length (the reference's duration fault), so that jobs do not end
            # on the poller's 10 s beat: the job length minus 0-10 s.
            share = delay / args.stagger if args.stagger > 0 else 0.0
            times = JobTimes(duration=args.job_seconds - FIXED_INTERVAL * share)
            await asyncio.sleep(delay)
            times.submitted = time.time()
            fault = {"X-Reference-Fault": f"duration={times.duration:.3f}"}
            reply = await http.post(
                "/api/decompose-description", json={"description": GOAL}, headers=fault
            )
            times.upstream = reply.json()["job_id"]
            while True:
                await asyncio.sleep(FIXED_INTERVAL)
                job = (await http.get(f"/api/jobs/{times.upstream}")).json()
                now = time.time()
                times.first_event = times.first_event or now
                if job["status"] in ("running", "completed") and not times.running:
                    times.running = now
                if job["status"] in ("completed", "failed", "cancelled"):
                    times.terminal = now
                    times.status = job["status"]
                    return times

        started.setup.jobs = list(await asyncio.gather(*(one(d) for d in delays)))


def collect(started: Started, *, args: argparse.Namespace) -> None:
    """After the run: the reference's poll count and each job's end on the service."""
    url = f"http://127.0.0.1:{started.ref_port}/__stats"
    started.setup.polls = httpx.get(url, timeout=10).json()["polls"]
    created = created_times(_log(started.reference))
    lengths = {j.upstream: j.duration for j in started.setup.jobs if j.duration}
    started.setup.completed = {
        job: at + lengths.get(job, args.job_seconds) for job, at in created.items()
    }


def _log(process: Process) -> str:
    return process.log_path.read_text(errors="replace")


def report(setups: list[Setup], *, command: str, args: argparse.Namespace) -> str:
    def stats(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{percentile(values, 0.5):.2f} / {max(values):.2f}"

    rows = []
    for s in setups:
        first = [j.first_event - j.submitted for j in s.jobs if j.first_event]
        run = [j.running - j.submitted for j in s.jobs if j.running]
        done = [
            j.terminal - s.completed[j.upstream]
            for j in s.jobs
            if j.terminal and j.upstream in s.completed
        ]
        ended = sum(1 for j in s.jobs if j.status == "completed")
        rows.append(
            [
                s.name,
                f"{ended}/{len(s.jobs)}",
                stats(first),
                stats(run),
                stats(done),
                f"{s.polls / max(len(s.jobs), 1):.1f}",
            ]
        )
    headers = [
        "set-up",
        "completed",
        "submit -> first event s (p50 / max)",
        "submit -> running s",
        "completion -> browser s",
        "polls/job",
    ]
    return "\n".join(
        [
            f"$ {command}",
            machine(),
            "",
            table(headers, rows),
            "",
            f"{args.jobs} jobs per set-up, {args.job_seconds:g} s each on the service, "
            f"submitted over {args.stagger:g} s; ours uses the default poll policy "
            "(2 s doubling to 30 s, ?wait= up to 25 s).",
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/end_to_end.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--jobs", type=int, default=6, help="jobs per set-up (default: %(default)r)"
    )
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=60.0,
        help="job length on the service (default: %(default)r)",
    )
    parser.add_argument(
        "--stagger",
        type=float,
        default=10.0,
        help="jobs are submitted over this many seconds (default: %(default)r)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)r)")
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="ours on PostgreSQL + Redis with a separate runworker process",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/13",
        help="with --scale-out: the first set-up's Redis database; the second uses the next "
        "(default: %(default)r)",
    )
    return parser


async def measure(
    *, ours_started: list[Started], fixed_started: Started, args: argparse.Namespace
) -> None:
    rng = random.Random(args.seed)
    delays = [rng.uniform(0, args.stagger) for _ in range(args.jobs)]  # the same for all
    limit = args.stagger + args.job_seconds * 2 + 90
    runs = [ours(started=s, args=args, delays=delays) for s in ours_started]
    runs.append(fixed(started=fixed_started, args=args, delays=delays))
    await asyncio.wait_for(asyncio.gather(*runs), limit)


def run(args: argparse.Namespace) -> list[Setup]:
    where = " (PostgreSQL, Redis, runworker)" if args.scale_out else ""
    setups = [
        Setup(f"ours, long-poll{where}"),
        Setup(f"ours, no long-poll{where}"),
        Setup("fixed 10 s (seed)"),
    ]
    with contextlib.ExitStack() as stack:
        ours_started = [
            ours_start(stack=stack, setup=setups[0], long_poll=True, args=args, index=0),
            ours_start(stack=stack, setup=setups[1], long_poll=False, args=args, index=1),
        ]
        fixed_started = fixed_start(stack=stack, setup=setups[2], args=args)
        asyncio.run(measure(ours_started=ours_started, fixed_started=fixed_started, args=args))
        for started in [*ours_started, fixed_started]:
            collect(started, args=args)
    return setups


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.jobs < 1 or args.job_seconds <= FIXED_INTERVAL or args.stagger < 0:
        print("need --jobs >= 1, --job-seconds > 10 and --stagger >= 0", file=sys.stderr)
        return 2
    try:
        setups = run(args)
    except (SetupError, TimeoutError) as exc:
        print(f"setup failed: {exc!r}", file=sys.stderr)
        return 1
    print(report(setups, command=command_line("bench/end_to_end.py", argv), args=args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
