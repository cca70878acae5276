"""Run a real server in a subprocess for end-to-end tests.

    port = free_port()
    args = ["-m", "agent_generator.reference", "--port", str(port)]
    with run_server(args=args, port=port) as live:
        httpx.get(f"{live.url}/health")

The process is ``sys.executable`` + ``args``; it is ready once
``http://127.0.0.1:{port}{ready_path}`` answers (any status). On exit it gets SIGTERM,
then SIGKILL if it has not stopped within a few seconds. Its stdout and stderr go to a
temporary file, read with :meth:`LiveProcess.output` (and shown when it fails to start).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

__all__ = ["LiveProcess", "ServerStartError", "free_port", "run_server"]

STOP_GRACE_SECONDS = 5.0


class ServerStartError(RuntimeError):
    """The server exited or did not answer in time; the message holds its output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveProcess:
    """A started server: its ``pid``, its base ``url``, its output, and a hard ``kill()``."""

    def __init__(self, *, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self._process = process
        self._log_path = log_path
        self.pid = process.pid
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self._log_path.read_text(encoding="utf-8", errors="replace")

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        return self._process.poll()

    def kill(self) -> None:
        """SIGKILL now (a crash, as far as clients can tell), and reap it."""
        if self._process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self._process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a few seconds; waits for the exit."""
        if self._process.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()


def _wait_until_ready(live: LiveProcess, *, ready_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"{live.url}{ready_path}"
    while True:
        if live.poll() is not None:
            raise ServerStartError(f"server exited with {live.poll()}:\n{live.output()}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(f"no answer from {url} in {timeout} s:\n{live.output()}")
        time.sleep(0.05)


@contextlib.contextmanager
def run_server(
    *,
    args: list[str],
    port: int,
    env: dict[str, str] | None = None,
    ready_path: str = "/health",
    timeout: float = 20,
) -> Iterator[LiveProcess]:
    """Start ``sys.executable *args``, wait until it answers, stop it on exit.

    ``env`` is added to (and overrides) this process's environment.
    """
    with tempfile.TemporaryDirectory(prefix="live-server-") as tmp:
        log_path = Path(tmp) / "output.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        live = LiveProcess(process=process, port=port, log_path=log_path)
        try:
            _wait_until_ready(live, ready_path=ready_path, timeout=timeout)
            yield live
        finally:
            live.stop()
