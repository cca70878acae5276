"""Many SSE streams on ONE Daphne web process: memory, threads, DB connections, delivery delay.

    .venv/bin/python bench/streams.py --streams 100,1000,2000,5000 [--layer memory|redis]
        [--db sqlite|postgres] [--anchors eventstream,eventstream-storage,channels|none]

For each system (ours first, then the anchors, one server at a time so none competes with
another for the two cores), in a fresh Daphne process on a free port:

1. **broadcast**: open streams that all follow ONE job (ours) or channel (anchors), growing to
   each size of ``--streams`` in turn; at each size read the server's RSS, threads
   (``/proc/PID/status``) and database connections, then publish ``--rounds`` stamped events
   one after the other and time each delivery on every stream. Memory per stream is
   (RSS now - RSS after a warm-up) / N.
2. **many jobs**: ``--jobs-streams`` streams, one job each, every job emitting one event every
   ``--period`` seconds (spread evenly) for ``--duration`` seconds; delay of every delivery.

Who publishes: ours on the in-memory layer, and the anchors, publish inside the server (the
bench-only endpoint of :mod:`bench.anchors.endpoint`: the in-memory layers reach only their
own process); ours appends the event to the job's log first, as the runner does. Ours on
Redis publishes from a separate process (:mod:`bench.anchors.publisher`) through the same
Redis. A delay runs from the publisher's ``time.monotonic()`` stamp, taken before its
database write, to the client's read of the bytes.

Ours runs ``copilot.asgi.application`` (wrapped by the endpoint for the in-memory layer) with
``COPILOT_RUNNER_IN_PROCESS=false``; the anchors run under the same Daphne from
:mod:`bench.anchors.asgi`: django-eventstream without and with its event storage, and a
plain Channels consumer on Channels' ``InMemoryChannelLayer``. Anchors stop at
``--anchor-max`` streams (they need an OS thread, or seconds, per stream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (
    PYTHON,
    ROOT,
    BenchDatabase,
    SetupError,
    StreamClient,
    arrivals_wait,
    command_line,
    daphne_args,
    django_setup,
    free_port,
    jobs_create,
    login_cookie,
    machine,
    ms,
    percentile,
    portal_env,
    raise_nofile,
    redis_forget,
    rss_bytes,
    running,
    streams_open,
    table,
    thread_count,
)

ANCHORS = ("eventstream", "eventstream-storage", "channels")
WARM_UP_STREAMS = 20


@dataclass
class SizeResult:
    streams: int
    kb_per_stream: float
    threads_before: int
    threads_after: int
    db_connections: int
    delays: list[float]
    missing: int


@dataclass
class SystemResult:
    name: str
    sizes: list[SizeResult] = field(default_factory=list)
    many_delays: list[float] = field(default_factory=list)
    many_expected: int = 0
    many_sent: int = 0
    many_behind: float = 0.0
    many_streams: int = 0
    note: str = ""


# -- one system under test -------------------------------------------------------------------


class System:
    """How to start one server, open its streams and make it publish."""

    name = ""
    max_streams = 10**9

    def __init__(self, *, args: argparse.Namespace) -> None:
        self.args = args
        self.port = free_port()
        self.db = BenchDatabase(kind=args.db)
        self.headers: dict[str, str] = {}

    def setup(self) -> None: ...

    def server_args(self) -> list[str]:
        raise NotImplementedError

    def server_env(self) -> dict[str, str]:
        raise NotImplementedError

    def broadcast_key(self) -> str:
        raise NotImplementedError

    def many_keys(self, count: int) -> list[str]:
        raise NotImplementedError

    def path(self, key: str) -> str:
        raise NotImplementedError

    async def publish(self, key: str) -> float:
        answer = await http_post_json(port=self.port, path="/__bench/publish", data={"key": key})
        return float(answer["stamp"])

    async def emit(self, keys: list[str], *, period: float, duration: float) -> dict:
        data = {"keys": keys, "period": period, "duration": duration}
        return await http_post_json(
            port=self.port, path="/__bench/emit", data=data, wait_seconds=duration * 4 + 60
        )

    def close(self) -> None:
        self.db.drop()


class Ours(System):
    def __init__(self, *, args: argparse.Namespace) -> None:
        super().__init__(args=args)
        self.name = f"ours ({args.layer} layer, {args.db})"
        if args.variant == "batched":
            self.name = f"ours + batched wake-ups (prototype, {args.db})"
        self.redis_url = args.redis_url if args.layer == "redis" else ""
        self.publisher: subprocess.Popen | None = None
        self._jobs: list[str] = []

    def setup(self) -> None:
        self.db.create()
        env = self.portal_env()
        django_setup(env)
        user, cookie = login_cookie()
        self.headers = {"Cookie": cookie, "Last-Event-ID": "1"}
        count = 1 + self.args.jobs_streams
        self._jobs = [str(j) for j in jobs_create(user=user, count=count)]
        from django.db import connections

        connections.close_all()
        if self.redis_url:
            self.publisher = subprocess.Popen(
                [PYTHON, "-m", "bench.anchors.publisher"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            line = self.publisher.stdout.readline()
            if '"ready"' not in line:
                raise SetupError(f"publisher did not start: {line!r}")

    def portal_env(self) -> dict[str, str]:
        variant = {"DJANGO_SETTINGS_MODULE": "bench.anchors.portal_settings"}
        return portal_env(
            **(variant if self.args.variant == "batched" else {}),
            database_url=self.db.url,
            redis_url=self.redis_url,
            COPILOT_RUNNER_IN_PROCESS="false",
            COPILOT_STREAM_MAX_SECONDS="3600",
            # Every stream of the bench is one user's.
            COPILOT_MAX_STREAMS_PER_USER="100000",
            AGENT_GENERATOR_URL="http://127.0.0.1:9",
        )

    def server_args(self) -> list[str]:
        app = (
            "copilot.asgi:application"
            if self.redis_url
            else "bench.anchors.portal_asgi:application"
        )
        return daphne_args(app=app, port=self.port)

    def server_env(self) -> dict[str, str]:
        return self.portal_env()

    def broadcast_key(self) -> str:
        return self._jobs[0]

    def many_keys(self, count: int) -> list[str]:
        return self._jobs[1 : 1 + count]

    def path(self, key: str) -> str:
        return f"/jobs/{key}/events"

    def _ask(self, command: dict) -> dict:
        assert self.publisher is not None
        self.publisher.stdin.write(json.dumps(command) + "\n")
        self.publisher.stdin.flush()
        return json.loads(self.publisher.stdout.readline())

    async def publish(self, key: str) -> float:
        if self.publisher is None:
            return await super().publish(key)
        answer = await asyncio.get_running_loop().run_in_executor(None, self._ask, {"key": key})
        return float(answer["stamp"])

    async def emit(self, keys: list[str], *, period: float, duration: float) -> dict:
        if self.publisher is None:
            return await super().emit(keys, period=period, duration=duration)
        command = {"keys": keys, "period": period, "duration": duration}
        return await asyncio.get_running_loop().run_in_executor(None, self._ask, command)

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.stdin.close()
            self.publisher.wait(10)
        if self.redis_url:
            redis_forget(self.redis_url)
        super().close()


class Anchor(System):
    def __init__(self, *, args: argparse.Namespace, kind: str) -> None:
        super().__init__(args=args)
        self.kind = kind
        self.max_streams = args.anchor_max
        self.name = {
            "eventstream": "django-eventstream",
            "eventstream-storage": "django-eventstream + storage",
            "channels": "plain Channels consumer, InMemoryChannelLayer",
        }[kind]
        self.prefix = "/plain/events" if kind == "channels" else "/es/events/"

    def setup(self) -> None:
        self.db.create(settings="bench.anchors.settings")

    def server_args(self) -> list[str]:
        return daphne_args(app="bench.anchors.asgi:application", port=self.port)

    def server_env(self) -> dict[str, str]:
        return portal_env(
            database_url=self.db.url,
            DJANGO_SETTINGS_MODULE="bench.anchors.settings",
            BENCH_ANCHOR="channels" if self.kind == "channels" else "eventstream",
            BENCH_EVENTSTREAM_STORAGE="1" if self.kind == "eventstream-storage" else "0",
        )

    def broadcast_key(self) -> str:
        return "bench"

    def many_keys(self, count: int) -> list[str]:
        return [f"job{i}" for i in range(count)]

    def path(self, key: str) -> str:
        return f"{self.prefix}?channel={key}"


async def http_post_json(*, port: int, path: str, data: dict, wait_seconds: float = 120.0) -> dict:
    body = json.dumps(data).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    answer = await asyncio.wait_for(reader.read(), wait_seconds)
    writer.close()
    status = answer[9:12]
    if status != b"200":
        raise SetupError(f"POST {path} answered {answer[:300]!r}")
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


# -- the measurements ------------------------------------------------------------------------


async def measure(system: System, *, sizes: list[int]) -> SystemResult:
    args = system.args
    result = SystemResult(name=system.name)
    await asyncio.to_thread(system.setup)
    env = system.server_env()
    with running(name="server", args=system.server_args(), env=env, port=system.port) as server:
        pid = server.pid
        key = system.broadcast_key()
        warm = await streams_open(
            port=system.port, paths=[system.path(key)] * WARM_UP_STREAMS, headers=system.headers
        )
        stamp = await system.publish(key)
        await arrivals_wait(warm, stamp=stamp, wait_seconds=30)
        for client in warm:
            client.close()
        await asyncio.sleep(1.0)
        rss_base, threads_base = rss_bytes(pid), thread_count(pid)
        clients: list[StreamClient] = []
        for size in sizes:
            if size > system.max_streams:
                result.note = f"stopped at {system.max_streams} streams (--anchor-max)"
                break
            started = time.monotonic()
            clients += await streams_open(
                port=system.port,
                paths=[system.path(key)] * (size - len(clients)),
                headers=system.headers,
                parallel=args.parallel,
                open_seconds=120,
            )
            opened = time.monotonic() - started
            await asyncio.sleep(1.0)
            if not server.alive():
                raise SetupError(f"server died:\n{server.output()}")
            rss, threads = rss_bytes(pid), thread_count(pid)
            conns = system.db.connections(pid=pid)
            delays: list[float] = []
            round_max: list[str] = []
            missing = 0
            for _ in range(args.rounds):
                stamp = await system.publish(key)
                got = await arrivals_wait(clients, stamp=stamp, wait_seconds=args.timeout)
                delays += got
                round_max.append(
                    f"{ms(min(got, default=float('nan')))}-{ms(max(got, default=float('nan')))}"
                )
                missing += len(clients) - len(got)
                await asyncio.sleep(0.5)
            result.sizes.append(
                SizeResult(
                    streams=size,
                    kb_per_stream=(rss - rss_base) / size / 1024,
                    threads_before=threads_base,
                    threads_after=threads,
                    db_connections=conns,
                    delays=delays,
                    missing=missing,
                )
            )
            print(
                f"  {system.name}: {size} streams open in {opened:.1f} s, "
                f"{(rss - rss_base) / size / 1024:.1f} KB/stream, threads {threads_base}->"
                f"{threads}, db conns {conns}, p50 {ms(percentile(delays, 0.5))} ms "
                f"max {ms(max(delays, default=float('nan')))} ms, missing {missing}; each round "
                f"first-last {', '.join(round_max)} ms",
                flush=True,
            )
        for client in clients:
            client.close()
        await asyncio.sleep(2.0)
        if args.jobs_streams and args.duration > 0:
            count = min(args.jobs_streams, system.max_streams)
            keys = system.many_keys(count)
            many = await streams_open(
                port=system.port,
                paths=[system.path(k) for k in keys],
                headers=system.headers,
                parallel=args.parallel,
                open_seconds=120,
            )
            await asyncio.sleep(1.0)
            emitted = await system.emit(keys, period=args.period, duration=args.duration)
            await asyncio.sleep(3.0)
            result.many_sent = int(emitted["sent"])
            result.many_behind = float(emitted["behind_max"])
            result.many_streams = count
            result.many_expected = count * round(args.duration / args.period)
            result.many_delays = [
                arrived - stamp for c in many for stamp, arrived in c.arrivals.items()
            ]
            for client in many:
                client.close()
            print(
                f"  {system.name}: {count} jobs x 1 stream, "
                f"{result.many_sent}/{result.many_expected} sent (behind by up to "
                f"{result.many_behind:.1f} s), {len(result.many_delays)} seen, "
                f"p50 {ms(percentile(result.many_delays, 0.5))} ms",
                flush=True,
            )
    return result


def report(results: list[SystemResult], *, command: str) -> str:
    lines = [f"$ {command}", machine(), "", "Broadcast of one event to N streams of one job:", ""]
    rows = []
    for res in results:
        for size in res.sizes:
            rows.append(
                [
                    res.name,
                    size.streams,
                    f"{size.kb_per_stream:.1f}",
                    f"{size.threads_before} -> {size.threads_after}",
                    size.db_connections,
                    ms(percentile(size.delays, 0.5)),
                    ms(percentile(size.delays, 0.99)),
                    ms(max(size.delays, default=float("nan"))),
                    size.missing,
                ]
            )
    headers = [
        "system",
        "streams",
        "KB/stream",
        "threads",
        "db conns",
        "p50 ms",
        "p99 ms",
        "max ms",
        "missed",
    ]
    lines.append(table(headers, rows))
    notes = [f"- {r.name}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", *notes]
    many = [r for r in results if r.many_streams]
    if many:
        lines += ["", "N jobs, one stream each, every job emitting one event per period:", ""]
        rows = [
            [
                r.name,
                r.many_streams,
                f"{r.many_sent}/{r.many_expected}",
                f"{r.many_behind:.1f}",
                len(r.many_delays),
                ms(percentile(r.many_delays, 0.5)),
                ms(percentile(r.many_delays, 0.99)),
                ms(max(r.many_delays, default=float("nan"))),
            ]
            for r in many
        ]
        lines.append(
            table(
                [
                    "system",
                    "jobs",
                    "events sent/planned",
                    "publisher behind s",
                    "deliveries seen",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                ],
                rows,
            )
        )
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1 or sizes[-1] > 15000:
        raise argparse.ArgumentTypeError("sizes must be between 1 and 15000")
    return sizes


def _anchors(text: str) -> list[str]:
    if text in ("", "none"):
        return []
    names = [part.strip() for part in text.split(",")]
    unknown = set(names) - set(ANCHORS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown anchors {sorted(unknown)}; use {ANCHORS}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/streams.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--streams",
        type=_sizes,
        default=_sizes("100,1000,2000,5000"),
        help="stream counts, grown in turn (default: 100,1000,2000,5000)",
    )
    parser.add_argument(
        "--layer",
        choices=["memory", "redis"],
        default="memory",
        help="ours: channel layer (default: %(default)r)",
    )
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="database (default: %(default)r)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/15",
        help="Redis for --layer redis (default: %(default)r)",
    )
    parser.add_argument(
        "--anchors",
        type=_anchors,
        default=list(ANCHORS),
        help=f"comma-separated from {','.join(ANCHORS)}, or none (default: all)",
    )
    parser.add_argument(
        "--anchor-max",
        type=int,
        default=2000,
        help="largest stream count for anchors (default: %(default)r)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="broadcasts per size (default: %(default)r)"
    )
    parser.add_argument(
        "--jobs-streams",
        type=int,
        default=2000,
        help="scenario 2: jobs with one stream each; 0 skips (default: %(default)r)",
    )
    parser.add_argument(
        "--period",
        type=float,
        default=10.0,
        help="scenario 2: seconds between a job's events (default: %(default)r)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="scenario 2: seconds of emitting (default: %(default)r)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=100,
        help="streams being opened at once (default: %(default)r)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for one broadcast (default: %(default)r)",
    )
    parser.add_argument(
        "--variant",
        choices=["shipped", "batched"],
        default="shipped",
        help="ours as shipped, or with the prototype fix of bench/anchors/batched_layer.py "
        "(memory layer only; default: %(default)r)",
    )
    parser.add_argument("--skip-ours", action="store_true", help="run the anchors only")
    return parser


async def main_async(args: argparse.Namespace) -> list[SystemResult]:
    systems: list[System] = [] if args.skip_ours else [Ours(args=args)]
    systems += [Anchor(args=args, kind=kind) for kind in args.anchors]
    results = []
    for system in systems:
        print(f"== {system.name}", flush=True)
        try:
            results.append(await measure(system, sizes=args.streams))
        finally:
            system.close()
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    limit = raise_nofile(20000)
    if limit < max(args.streams) * 2 + 200:
        print(f"open-files limit {limit} is too low for {max(args.streams)} streams")
        return 2
    try:
        results = asyncio.run(main_async(args))
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 1
    print()
    print(report(results, command=command_line("bench/streams.py", argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
