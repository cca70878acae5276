"""Start the portal's own processes (runners, web servers) against the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    """A DATABASE_URL naming the database this test runs on (SQLite file or PostgreSQL)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def portal_env(**overrides: str) -> dict[str, str]:
    """The environment of a portal process in a test: the test database, short timings."""
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
            # The test's own key, so sessions made in the test are valid in the processes.
            "SECRET_KEY": settings.SECRET_KEY,
            "DATABASE_URL": test_database_url(),
            "COPILOT_LEASE_SECONDS": "2",
            "AGENT_GENERATOR_POLL_INTERVAL": "0.05",
            "AGENT_GENERATOR_POLL_MAX_INTERVAL": "0.2",
            "AGENT_GENERATOR_REQUEST_TIMEOUT": "5",
            "LOG_LEVEL": "INFO",
            # DEBUG is off, where the embedded Agent Generator is refused: a test that needs
            # one starts it and passes its URL; nothing listens on port 9 (discard).
            "AGENT_GENERATOR_URL": "http://127.0.0.1:9",
            # Test servers speak plain http, and with DEBUG off cookies are Secure by default,
            # which httpx and browsers never send back over http: no session would survive.
            # Only tests of the TLS settings (tests/copilot/test_production.py) turn them on.
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
        }
    )
    env.update(overrides)
    return env


class PortalProcess:
    def __init__(self, process: subprocess.Popen, log_path: Path) -> None:
        self.process = process
        self.pid = process.pid
        self.log_path = log_path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (a crash)."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def portal_process(*args: str, env: dict[str, str]) -> Iterator[PortalProcess]:
    """``python manage.py *args`` with ``env``; stopped (by pid) when the block ends."""
    with tempfile.TemporaryDirectory(prefix="portal-process-") as tmp:
        log_path = Path(tmp) / "output.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        live = PortalProcess(process, log_path)
        try:
            yield live
        finally:
            live.stop()


def manage_py_refusal(*args: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py *args`` as an operator's shell runs it, for arguments the command
    must refuse before it touches the database (its database can never be opened)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=portal_env(DATABASE_URL="sqlite:////nonexistent/never-opened.sqlite3"),
        capture_output=True,
        text=True,
        timeout=60,
    )
