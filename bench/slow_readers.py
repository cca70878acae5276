"""Clients that never read, on a job with a big event log: the web process's memory for them.

    .venv/bin/python bench/slow_readers.py [--clients 60] [--waves 3] [--result-mb 2]
        [--hold 10] [--variants bounded,unbounded] [--rcvbuf 0]

One Daphne process (``COPILOT_HEARTBEAT_SECONDS=1``, a throw-away SQLite database) serves
one completed job whose result is ``--result-mb`` MB of JSON, so a fresh connection's
replay is about twice that (the snapshot carries the result, and so does the result event).
After three clients that read the whole stream (the warm-up, and a check that a reader
gets every byte), ``--waves`` waves of ``--clients`` raw sockets each send the GET and never
read; every socket stays open until the end of the run. The server's RSS
(``/proc/PID/statm``) is sampled every 0.2 s, and read at the end of each wave (``--hold``
seconds after it opened) and once more 2 s after all the clients closed. "reset by
server": clients whose connection the server dropped (the client socket's TCP state, from
``TCP_INFO``). Memory the server frees is not all given back to the system (the allocator
keeps it for reuse), so what tells a bound from a leak is the next waves: bounded, they
reuse it; unbounded, each wave adds its own.

Variants, each in its own server:

- ``bounded``: the portal as it is (``copilot.asgi:application``): the replay is handed to
  Daphne as the socket drains, and a stream stuck on more than 1 MB is dropped;
- ``unbounded``: the same app behind :func:`unbounded_application`, which hides Daphne's
  request from the stream (its ``send`` wrapped in a plain function), so the stream cannot
  see backpressure and writes everything at once, as it did before.

``--rcvbuf`` sets the clients' ``SO_RCVBUF`` (0: the system's default), i.e. how much the
kernel takes off the server's hands before the server's own buffer fills.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (
    BenchDatabase,
    SetupError,
    command_line,
    daphne_args,
    django_setup,
    free_port,
    get_request,
    login_cookie,
    machine,
    portal_env,
    raise_nofile,
    rss_bytes,
    running,
    table,
)

VARIANTS = ("bounded", "unbounded")
NOWHERE = "http://127.0.0.1:9"  # no Agent Generator: the job is complete already
MB = 1024 * 1024
TCP_CLOSE = 7  # tcpi_state of a socket whose connection was reset


async def unbounded_application(scope, receive, send):
    """The portal's app with ``send`` hidden from the stream's backpressure (the "before")."""
    from copilot.asgi import application

    async def opaque_send(message):
        await send(message)

    await application(scope, receive, opaque_send)


@dataclass
class Run:
    variant: str
    clients: int
    replay_bytes: int
    rss_before: int = 0
    rss_peak: int = 0
    rss_after_wave: list[int] = field(default_factory=list)
    rss_after_close: int = 0
    reset: int = 0


def big_job(*, user, result_mb: float) -> str:
    """A completed job whose result is about ``result_mb`` MB of JSON (needs django_setup)."""
    from copilot.jobs import services, transitions

    node = {"id": "n", "block": "send_email", "input": {"body": "x" * 900}}
    count = int(result_mb * MB / 1000)
    agent = {"name": "big", "nodes": [dict(node, id=f"n{i}") for i in range(count)], "links": []}
    job = services.job_submit(user=user, kind="decompose", payload={"description": "bench"})
    job = transitions.job_mark_submitting(job=job).job
    job = transitions.job_mark_running(job=job, upstream_job_id="bench").job
    transitions.job_complete(job=job, result={"type": "agent", "agent_json": agent}, publish=False)
    return str(job.id)


def read_all(*, port: int, request: bytes, timeout: float = 30) -> bytes:
    """One client that reads the whole stream (the job is complete, so it ends)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout) as sock:
        sock.sendall(request)
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


def tcp_state(sock: socket.socket) -> int:
    return struct.unpack("B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0]


def never_reading(*, port: int, request: bytes, rcvbuf: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def run_variant(args: argparse.Namespace, *, variant: str, db: BenchDatabase) -> Run:
    env = portal_env(
        database_url=db.url,
        COPILOT_RUNNER_IN_PROCESS="false",
        COPILOT_HEARTBEAT_SECONDS="1",
        COPILOT_STREAM_MAX_SECONDS="3600",
        COPILOT_MAX_STREAMS_PER_USER=str(args.clients * args.waves + 10),
        AGENT_GENERATOR_URL=NOWHERE,
    )
    port = free_port()
    app = {
        "bounded": "copilot.asgi:application",
        "unbounded": "bench.slow_readers:unbounded_application",
    }[variant]
    request = get_request(path=f"/jobs/{args.job_id}/events", port=port, headers=args.headers)
    with running(
        name=f"slow-{variant}", args=daphne_args(app=app, port=port), env=env, port=port
    ) as server:
        replay = b""
        reader = get_request(
            path=f"/jobs/{args.job_id}/events",
            port=port,
            headers={**args.headers, "Connection": "close"},
        )
        for _ in range(3):
            replay = read_all(port=port, request=reader)
        if b"event: result" not in replay or b'"terminal":true' not in replay:
            raise SetupError(f"a reading client did not get the whole log:\n{server.output()}")
        time.sleep(1)
        result = Run(variant=variant, clients=args.clients, replay_bytes=len(replay))
        result.rss_before = result.rss_peak = rss_bytes(server.pid)
        sockets: list[socket.socket] = []
        for _ in range(args.waves):
            sockets += [
                never_reading(port=port, request=request, rcvbuf=args.rcvbuf)
                for _ in range(args.clients)
            ]
            started = time.monotonic()
            while time.monotonic() - started < args.hold:
                result.rss_peak = max(result.rss_peak, rss_bytes(server.pid))
                time.sleep(0.2)
            result.rss_after_wave.append(rss_bytes(server.pid))
        result.reset = sum(tcp_state(sock) == TCP_CLOSE for sock in sockets)
        for sock in sockets:
            sock.close()
        time.sleep(2)
        result.rss_after_close = rss_bytes(server.pid)
    return result


def report(runs: list[Run], *, args: argparse.Namespace, command: str) -> str:
    def mb(value: int) -> str:
        return f"{value / MB:.0f}"

    rows = [
        (
            run.variant,
            f"{args.waves} x {run.clients}",
            f"{run.replay_bytes / MB:.1f}",
            mb(run.rss_before),
            " / ".join(mb(rss) for rss in run.rss_after_wave),
            mb(run.rss_peak),
            f"{run.reset}/{run.clients * args.waves}",
            mb(run.rss_after_close),
        )
        for run in runs
    ]
    headers = [
        "variant",
        "clients",
        "replay MB",
        "RSS before MB",
        "after each wave MB",
        "peak MB",
        "reset by server",
        "after close MB",
    ]
    return "\n\n".join([f"```\n$ {command}\n```", machine(), table(headers, rows)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/slow_readers.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--clients", type=int, default=60, help="never-reading clients a wave")
    parser.add_argument("--waves", type=int, default=3, help="waves of clients")
    parser.add_argument("--result-mb", type=float, default=2.0, help="size of the job's result")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds to watch the RSS")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="bounded,unbounded")
    parser.add_argument("--rcvbuf", type=int, default=0, help="clients' SO_RCVBUF (0: default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if not set(variants) <= set(VARIANTS) or args.clients < 1 or args.waves < 1:
        print(f"--variants takes {','.join(VARIANTS)}; --clients, --waves at least 1")
        return 2
    raise_nofile(args.clients * args.waves + 200)
    runs = []
    db = BenchDatabase(kind="sqlite")
    db.create()
    try:
        django_setup(portal_env(database_url=db.url, AGENT_GENERATOR_URL=NOWHERE))
        user, cookie = login_cookie()
        args.job_id = big_job(user=user, result_mb=args.result_mb)
        args.headers = {"Cookie": cookie}
        from django.db import connections

        connections.close_all()
        for variant in variants:
            print(f"== {variant}", flush=True)
            runs.append(run_variant(args, variant=variant, db=db))
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 1
    finally:
        db.drop()
    print()
    print(report(runs, args=args, command=command_line("bench/slow_readers.py", argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
