"""Shared helpers of the benchmarks: processes, /proc readings, databases, raw SSE clients.

Everything here talks to 127.0.0.1 only. Servers are subprocesses on free ports, stopped by
pid (SIGTERM, then SIGKILL). The SSE client is a bare ``asyncio.Protocol`` (one HTTP/1.1 GET
with the session cookie, then a regex over the bytes), so thousands of streams cost the load
generator, which shares the machine's two cores with the server, almost nothing.

Timestamps cross processes as ``time.monotonic()`` values: on Linux that is
``CLOCK_MONOTONIC``, one clock for every process of the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import re
import resource
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

#: The bench-only marker in event data: ``"bt": <time.monotonic() of the publish>``.
STAMP_RE = re.compile(rb'"bt": ?([0-9]+\.[0-9]+)')


class SetupError(RuntimeError):
    """A server or database could not be set up; the benchmark exits non-zero."""


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A subprocess with its output in a temporary file; stopped by pid."""

    def __init__(self, *, name: str, args: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.args = list(args)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"bench-{name}-")
        self.log_path = Path(self._tmp.name) / "output.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                self.args,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.pid = self.popen.pid

    def output(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; reaps the process."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait()
        with contextlib.suppress(Exception):
            self.popen.stdin.close()
        self._tmp.cleanup()


def wait_http(
    *, port: int, path: str = "/", timeout: float = 30.0, process: Process | None = None
) -> None:
    """Wait until ``GET path`` on 127.0.0.1:port gets any HTTP answer (raises SetupError)."""
    deadline = time.monotonic() + timeout
    request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise SetupError(f"{process.name} exited:\n{process.output()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(request)
            if s.recv(16).startswith(b"HTTP/"):
                return
        time.sleep(0.1)
    tail = process.output() if process is not None else ""
    raise SetupError(f"no answer on 127.0.0.1:{port}{path} in {timeout} s\n{tail}")


def wait_until(
    predicate: Callable[[], object], *, seconds: float, what: str, step: float = 0.02
) -> None:
    """Return once ``predicate()`` is true (checked every ``step`` s); SetupError after
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise SetupError(f"timed out waiting for {what}")


@contextlib.contextmanager
def running(
    *, name: str, args: Sequence[str], env: dict[str, str], port: int | None, ready: str = "/"
) -> Iterator[Process]:
    """Start a process, wait until it answers HTTP on ``port`` (if given), stop it on exit."""
    process = Process(name=name, args=args, env=env)
    try:
        if port is not None:
            wait_http(port=port, path=ready, process=process)
        yield process
    finally:
        process.stop()


def daphne_args(*, app: str, port: int) -> list[str]:
    return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), app]


def reference_args(*, port: int, job_seconds: float, long_poll: bool = True) -> list[str]:
    args = [PYTHON, "-m", "agent_generator.reference", "--port", str(port)]
    args += ["--job-seconds", f"{job_seconds:g}", "--expose-stats"]
    return args if long_poll else [*args, "--no-long-poll"]


# -- /proc ---------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (``/proc/PID/statm``)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise SetupError(f"no Threads: line for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (``/proc/PID/stat`` utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def fds_to(pid: int, prefix: str) -> int:
    """How many open file descriptors of ``pid`` point at a path starting with ``prefix``."""
    count = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith(prefix):
                count += 1
    return count


def tcp_connections(*, pid: int, remote_port: int) -> int:
    """Established TCP connections of ``pid`` to ``remote_port`` (any address)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    count = 0
    for table_path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table_path).read_text().splitlines()[1:]:
                parts = line.split()
                port = int(parts[2].rsplit(":", 1)[1], 16)
                if port == remote_port and parts[3] == "01" and parts[9] in inodes:
                    count += 1
    return count


def raise_nofile(want: int = 20000) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- numbers and tables --------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


def ms(value: float) -> str:
    return "-" if value != value else f"{value * 1000:.0f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (numbers right-aligned)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    mem = "?"
    with contextlib.suppress(OSError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (
        f"machine: {os.cpu_count()} cores (nproc), {mem} RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average now {' '.join(load)}"
    )


def command_line(script: str, argv: Sequence[str]) -> str:
    return shlex.join([".venv/bin/python", script, *argv])


# -- databases -----------------------------------------------------------------------------


@dataclass
class BenchDatabase:
    """A throw-away database for one benchmark run: a SQLite file or a PostgreSQL db."""

    kind: str  # "sqlite" or "postgres"
    postgres_url: str = "postgres://postgres@127.0.0.1:5432/postgres"
    url: str = ""
    name: str = ""
    _tmp: tempfile.TemporaryDirectory | None = None

    def create(self, *, settings: str = "copilot.settings") -> None:
        """Create the database and migrate it with Django ``settings``."""
        if self.kind == "sqlite":
            self._tmp = tempfile.TemporaryDirectory(prefix="bench-db-")
            self.name = str(Path(self._tmp.name) / "bench.sqlite3")
            self.url = f"sqlite:///{self.name}"
        else:
            import psycopg

            self.name = f"copilot_bench_{os.getpid()}_{secrets.token_hex(3)}"
            try:
                with psycopg.connect(self.postgres_url, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{self.name}"')
            except psycopg.Error as exc:
                raise SetupError(f"cannot create PostgreSQL database: {exc}") from exc
            self.url = self.postgres_url.rsplit("/", 1)[0] + f"/{self.name}"
        result = subprocess.run(
            [PYTHON, "-m", "django", "migrate", "--noinput"],
            cwd=ROOT,
            env=portal_env(database_url=self.url, DJANGO_SETTINGS_MODULE=settings),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode:
            raise SetupError(f"migrate failed:\n{result.stdout}\n{result.stderr}")

    def connections(self, *, pid: int) -> int:
        """Database connections the process ``pid`` holds on this database right now.

        SQLite: open descriptors of the db file (and its -wal/-shm). PostgreSQL: the
        process's TCP connections to port 5432 (read from /proc; other processes on the
        same db, such as a publisher, are not counted).
        """
        if self.kind == "sqlite":
            return fds_to(pid, self.name)
        return tcp_connections(pid=pid, remote_port=5432)

    def drop(self) -> None:
        if self.kind == "sqlite":
            if self._tmp is not None:
                self._tmp.cleanup()
            return
        import psycopg

        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.postgres_url, autocommit=True) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def portal_env(*, database_url: str, redis_url: str = "", **extra: str) -> dict[str, str]:
    """The environment of a portal process (or of this process's Django) for a benchmark."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"}
        and not k.startswith(("AGENT_GENERATOR_", "COPILOT_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "copilot.settings",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
            "SECRET_KEY": "bench-only-secret-key-0123456789-0123456789-0123456789",
            "DATABASE_URL": database_url,
            # DEBUG is off, where the embedded Agent Generator is refused: a bench that runs
            # jobs names its reference service; the others never reach this address.
            "AGENT_GENERATOR_URL": "http://127.0.0.1:9",
            "LOG_LEVEL": "WARNING",
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def django_setup(env: dict[str, str]) -> None:
    """Configure Django in this (the load generator's) process with a portal's environment;
    once: a later call (a bench's next run) changes nothing, as settings are read once."""
    from django.apps import apps

    if apps.ready:
        return
    for key in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SECRET_KEY"):
        os.environ.pop(key, None)
        if key in env:
            os.environ[key] = env[key]
    for key, value in env.items():
        if key.startswith(("COPILOT_", "AGENT_GENERATOR_", "LOG_LEVEL")):
            os.environ[key] = value
    import django

    django.setup()


def login_cookie(*, username: str = "bench") -> tuple[object, str]:
    """A user and the ``Cookie`` header value of a logged-in session (needs django_setup)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username=username)
    client = Client()
    client.force_login(user)
    return user, f"sessionid={client.cookies['sessionid'].value}"


def jobs_create(*, user: object, count: int) -> list[uuid.UUID]:
    """``count`` running jobs, each with one event (seq 1), held by nobody who will poll them."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from copilot.jobs.models import GenerationJob, JobEvent

    far = timezone.now() + timedelta(days=1)
    jobs = [
        GenerationJob(
            owner=user,
            kind="decompose",
            request={"description": "bench"},
            status="running",
            upstream_job_id="bench",
            lease_owner="bench-nobody",
            lease_expires_at=far,
            last_event_seq=1,
            started_at=timezone.now(),
        )
        for _ in range(count)
    ]
    with transaction.atomic():
        GenerationJob.objects.bulk_create(jobs, batch_size=500)
        events = [
            JobEvent(job=job, seq=1, type="status", data={"status": "running", "terminal": False})
            for job in jobs
        ]
        JobEvent.objects.bulk_create(events, batch_size=500)
    return [job.id for job in jobs]


# -- raw SSE clients -----------------------------------------------------------------------


@dataclass
class StreamClient(asyncio.Protocol):
    """One SSE stream over a bare socket; records when each stamped event arrived."""

    request: bytes
    arrivals: dict[float, float] = field(default_factory=dict)  # stamp -> arrival
    status: int = 0
    opened: asyncio.Future | None = None
    closed: bool = False
    _head: bytes = b""
    _tail: bytes = b""
    transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.status:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self._head[9:12])
            data, self._head = self._head[end + 4 :], b""
            if self.opened is not None and not self.opened.done():
                self.opened.set_result(self.status)
        chunk = self._tail + data
        for match in STAMP_RE.finditer(chunk):
            self.arrivals.setdefault(float(match.group(1)), now)
        self._tail = chunk[-40:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.opened is not None and not self.opened.done():
            self.opened.set_result(self.status or -1)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def get_request(*, path: str, port: int, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def streams_open(
    *,
    port: int,
    paths: Sequence[str],
    headers: dict[str, str] | None = None,
    parallel: int = 100,
    open_seconds: float = 60.0,
) -> list[StreamClient]:
    """Open one stream per path, ``parallel`` at a time; raises SetupError if any fails."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(parallel)

    async def one(path: str) -> StreamClient:
        async with gate:
            client = StreamClient(request=get_request(path=path, port=port, headers=headers))
            client.opened = loop.create_future()
            await loop.create_connection(lambda: client, "127.0.0.1", port)
            status = await asyncio.wait_for(client.opened, open_seconds)
            if status != 200:
                raise SetupError(f"stream {path} answered {status}")
            return client

    return list(await asyncio.gather(*(one(p) for p in paths)))


async def arrivals_wait(
    clients: Sequence[StreamClient], *, stamp: float, wait_seconds: float
) -> list[float]:
    """Wait until every client has the event stamped ``stamp``; return the delays seen."""
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if all(stamp in c.arrivals for c in clients):
            break
        await asyncio.sleep(0.05)
    return [c.arrivals[stamp] - stamp for c in clients if stamp in c.arrivals]


def redis_forget(url: str) -> None:
    """Delete the keys channels_redis created (its ``asgi`` prefix) in the bench's Redis db."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match="asgi*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
