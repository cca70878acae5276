"""What following a long job costs: requests per job and how late the end is noticed.

    python bench/poll_cost.py --jobs 20 --job-seconds 1800 --scale 0.01

Runs ``--jobs`` simulated jobs against the reference service (in-process, over
``httpx.ASGITransport``) for each of three pollers, all at once in one event loop:

- ``ours, long-poll``: ``AgentGeneratorClient.run()`` with the default ``PollPolicy``,
  against a service that holds ``?wait=`` polls;
- ``ours, no long-poll``: the same client against a service without the extension;
- ``fixed 10 s``: the old client's way, one plain poll every 10 s (the anchor).

To keep the run short every duration (job length, intervals, caps, waits, budget) is
multiplied by ``--scale``; delays are divided by it again, so the table shows real
seconds. Each job lasts ``job-seconds`` minus a random 0-10 s (the same draw for the
three pollers), so that a job does not end exactly on the fixed poller's 10 s beat.
The delay is measured from the moment the job completes on the service to the moment
the poller has the result; requests count the polls (each job also has one submit).

The event loop is shared, so loop lag adds to every delay: it is measured and printed
(scaled back too) as the noise floor of the delay columns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent_generator import AgentGeneratorClient, Operation, PollPolicy
from agent_generator.reference import ReferenceSettings, create_app

GOAL = (
    "Every weekday at 8am, search the web for the latest news about solar power, "
    "summarise the top 5 articles in bullet points and email the summary to me@example.com"
)
FIXED_INTERVAL = 10.0  # seconds, the old client's beat
MAX_WAIT = 25.0  # the protocol's cap for ?wait=N

Scope = dict[str, Any]
ASGIApp = Callable[..., Awaitable[None]]


@dataclass
class JobClock:
    """ASGI middleware: when each job was created (its 202 answer) and how often polled."""

    app: ASGIApp
    created: dict[str, float] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if scope["method"] == "GET" and path.startswith("/api/jobs/"):
            job_id = path.rsplit("/", 1)[1]
            self.polls[job_id] = self.polls.get(job_id, 0) + 1
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return

        async def record_submit(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                answered = time.monotonic()
                job_id = json.loads(message["body"]).get("job_id")
                if isinstance(job_id, str):
                    self.created.setdefault(job_id, answered)
            await send(message)

        await self.app(scope, receive, record_submit)


@dataclass
class Outcome:
    job_id: str
    noticed: float


@dataclass
class Poller:
    name: str
    clock: JobClock
    follow: Callable[[int], Awaitable[Outcome]]
    outcomes: list[Outcome] = field(default_factory=list)


def make_transport(*, long_poll: bool, scale: float) -> tuple[JobClock, httpx.ASGITransport]:
    """A fresh reference service (scaled), wrapped in a JobClock, as a transport."""
    settings = ReferenceSettings(
        ttl_seconds=3600 * 10 * scale, max_wait_seconds=MAX_WAIT * scale, long_poll=long_poll
    )
    clock = JobClock(create_app(settings=settings))
    return clock, httpx.ASGITransport(app=clock)


def fault_header(duration: float) -> dict[str, str]:
    return {"X-Reference-Fault": f"duration={duration:.6f}"}


async def loop_lag(stop: asyncio.Event, *, tick: float, lags: list[float]) -> None:
    """How late ``asyncio.sleep(tick)`` wakes up: the shared loop's noise floor."""
    while not stop.is_set():
        started = time.monotonic()
        await asyncio.sleep(tick)
        lags.append(time.monotonic() - started - tick)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


async def bench(*, jobs: int, job_seconds: float, scale: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    durations = [(job_seconds - rng.uniform(0, FIXED_INTERVAL)) * scale for _ in range(jobs)]
    starts = [rng.uniform(0, FIXED_INTERVAL) * scale for _ in range(jobs)]
    policy = PollPolicy(budget=job_seconds * 2).scaled(factor=scale)
    # Unscaled read timeout: the ?wait= cap is then policy.max_wait, as in production.
    timeout = httpx.Timeout(30.0)

    # Each job's length is set per job (the duration fault), so the services' default is moot.
    long_clock, long_transport = make_transport(long_poll=True, scale=scale)
    short_clock, short_transport = make_transport(long_poll=False, scale=scale)
    fixed_clock, fixed_transport = make_transport(long_poll=False, scale=scale)
    clients = {
        name: AgentGeneratorClient(
            base_url="http://reference.bench", transport=transport, timeout=timeout, policy=policy
        )
        for name, transport in (
            ("long", long_transport),
            ("short", short_transport),
            ("fixed", fixed_transport),
        )
    }

    def ours(client: AgentGeneratorClient) -> Callable[[int], Awaitable[Outcome]]:
        async def follow(index: int) -> Outcome:
            await asyncio.sleep(starts[index])
            submitted: list[str] = []

            async def on_update(update: Any) -> None:
                if update.kind == "submitted":
                    submitted.append(update.job_id)

            await client.run(
                operation=Operation.DECOMPOSE,
                payload={"description": GOAL},
                idempotency_key=f"bench-{index}",
                extra_headers=fault_header(durations[index]),
                on_update=on_update,
            )
            return Outcome(job_id=submitted[0], noticed=time.monotonic())

        return follow

    async def fixed(index: int) -> Outcome:
        client = clients["fixed"]
        await asyncio.sleep(starts[index])
        job_id = await client.submit(
            operation=Operation.DECOMPOSE,
            payload={"description": GOAL},
            idempotency_key=f"bench-{index}",
            extra_headers=fault_header(durations[index]),
        )
        while True:
            await asyncio.sleep(FIXED_INTERVAL * scale)
            answer = await client.poll(job_id=job_id)
            if answer.terminal:
                return Outcome(job_id=job_id, noticed=time.monotonic())

    pollers = [
        Poller("ours, long-poll", long_clock, ours(clients["long"])),
        Poller("ours, no long-poll", short_clock, ours(clients["short"])),
        Poller("fixed 10 s (old client)", fixed_clock, fixed),
    ]
    stop = asyncio.Event()
    lags: list[float] = []
    lag_task = asyncio.create_task(loop_lag(stop, tick=0.005, lags=lags))
    started = time.monotonic()

    async def run_poller(poller: Poller) -> None:
        poller.outcomes = list(await asyncio.gather(*(poller.follow(i) for i in range(jobs))))

    await asyncio.gather(*(run_poller(poller) for poller in pollers))
    wall = time.monotonic() - started
    stop.set()
    await lag_task
    for client in clients.values():
        await client.aclose()

    rows = [
        "| poller | polls/job mean | polls/job max | delay p50 (s) | delay max (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for poller in pollers:
        polls = [poller.clock.polls[o.job_id] for o in poller.outcomes]
        delays = []
        for index, outcome in enumerate(poller.outcomes):
            ended = poller.clock.created[outcome.job_id] + durations[index]
            delays.append((outcome.noticed - ended) / scale)
        rows.append(
            f"| {poller.name} | {statistics.mean(polls):.1f} | {max(polls)} | "
            f"{statistics.median(delays):.2f} | {max(delays):.2f} |"
        )
    rows += [
        "",
        f"event-loop lag (noise floor of the delays, real s): "
        f"p50 {percentile(lags, 0.5) / scale:.2f}, p99 {percentile(lags, 0.99) / scale:.2f}, "
        f"max {max(lags) / scale:.2f}",
        f"wall time {wall:.1f} s for {jobs} jobs x 3 pollers",
    ]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--jobs", type=int, default=20, help="jobs per poller (default: %(default)r)"
    )
    parser.add_argument(
        "--job-seconds", type=float, default=1800.0, help="job length (default: %(default)r)"
    )
    parser.add_argument(
        "--scale", type=float, default=0.01, help="time compression (default: %(default)r)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)r)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or not 0 < args.scale <= 1 or args.job_seconds <= FIXED_INTERVAL:
        parser.error("need --jobs >= 1, 0 < --scale <= 1 and --job-seconds > 10")
    command = shlex.join(["python", "bench/poll_cost.py", *(argv or sys.argv[1:])])
    rows = asyncio.run(
        bench(jobs=args.jobs, job_seconds=args.job_seconds, scale=args.scale, seed=args.seed)
    )
    print(f"$ {command}")
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}"
    )
    print()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
