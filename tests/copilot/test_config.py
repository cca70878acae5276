"""Settings come from the environment, with defaults that serve one machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from copilot.config import EMBEDDED_AGENT_GENERATOR, ConfigError, load

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_serve_one_machine(tmp_path):
    config = load({"DEBUG": "true"}, base_dir=tmp_path)
    assert config.debug is True
    assert config.secret_key  # a development key, DEBUG only
    assert config.allowed_hosts == ["127.0.0.1", "localhost"]
    assert config.database["ENGINE"] == "django.db.backends.sqlite3"
    assert config.database["NAME"] == str(tmp_path / "db.sqlite3")
    assert "journal_mode=WAL" in config.database["OPTIONS"]["init_command"]
    assert config.database["OPTIONS"]["timeout"] > 0
    assert config.redis_url == ""
    assert config.runner_in_process is True
    assert config.agent_generator_url == EMBEDDED_AGENT_GENERATOR
    assert config.agent_generator_request_timeout == 30
    assert config.agent_generator_poll_interval == 2
    assert config.agent_generator_poll_max_interval == 30
    assert config.agent_generator_poll_budget == 1800
    assert config.agent_generator_max_consecutive_errors == 5
    assert config.lease_seconds == 60
    assert config.runner_concurrency == 100
    assert config.max_active_jobs_per_user == 3
    assert config.heartbeat_seconds == 15
    assert config.stream_max_seconds == 240


def test_overrides_from_the_environment(tmp_path):
    config = load(
        {
            "SECRET_KEY": "k" * 50,
            "ALLOWED_HOSTS": "portal.example.com, .example.org",
            "DATABASE_URL": "postgres://u:p@db.internal:5433/portal",
            "REDIS_URL": "redis://cache:6379/1",
            "AGENT_GENERATOR_URL": "https://generator.internal/",
            "AGENT_GENERATOR_REQUEST_TIMEOUT": "12.5",
            "AGENT_GENERATOR_POLL_INTERVAL": "1",
            "AGENT_GENERATOR_POLL_MAX_INTERVAL": "20",
            "AGENT_GENERATOR_POLL_BUDGET": "600",
            "AGENT_GENERATOR_MAX_CONSECUTIVE_ERRORS": "7",
            "COPILOT_LEASE_SECONDS": "30",
            "COPILOT_RUNNER_CONCURRENCY": "500",
        },
        base_dir=tmp_path,
    )
    assert config.debug is False
    assert config.allowed_hosts == ["portal.example.com", ".example.org"]
    assert config.database["ENGINE"] == "django.db.backends.postgresql"
    assert (config.database["HOST"], config.database["PORT"]) == ("db.internal", 5433)
    assert config.redis_url == "redis://cache:6379/1"
    assert config.runner_in_process is False  # a shared layer: runners are their own processes
    assert config.agent_generator_url == "https://generator.internal"
    assert config.agent_generator_request_timeout == 12.5
    assert config.agent_generator_poll_interval == 1
    assert config.agent_generator_poll_max_interval == 20
    assert config.agent_generator_poll_budget == 600
    assert config.agent_generator_max_consecutive_errors == 7
    assert config.lease_seconds == 30
    assert config.runner_concurrency == 500
    # PostgreSQL: Django's connection pool, 20 connections per process unless told otherwise.
    assert config.database["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 20, "timeout": 10}
    assert config.database["CONN_MAX_AGE"] == 0  # the pool needs it (and ASGI wants it)


def test_the_postgresql_pool_is_sized_or_turned_off(tmp_path):
    base = {"DEBUG": "1", "DATABASE_URL": "postgres://db/portal"}
    sized = load({**base, "DATABASE_POOL_SIZE": "8"}, base_dir=tmp_path)
    off = load({**base, "DATABASE_POOL_SIZE": "0"}, base_dir=tmp_path)
    sqlite = load({"DEBUG": "1", "DATABASE_POOL_SIZE": "8"}, base_dir=tmp_path)
    assert sized.database["OPTIONS"]["pool"]["max_size"] == 8
    assert "pool" not in off.database.get("OPTIONS", {})
    assert "pool" not in sqlite.database["OPTIONS"]  # SQLite has no pool; the value is ignored


def test_in_process_runner_can_be_forced_either_way(tmp_path):
    on = load(
        {"DEBUG": "1", "REDIS_URL": "redis://x", "COPILOT_RUNNER_IN_PROCESS": "true"},
        base_dir=tmp_path,
    )
    off = load({"DEBUG": "1", "COPILOT_RUNNER_IN_PROCESS": "false"}, base_dir=tmp_path)
    assert (on.runner_in_process, off.runner_in_process) == (True, False)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "false"}, "SECRET_KEY is not set and DEBUG is off"),
        ({"DEBUG": "1", "DATABASE_URL": "mysqlx://db/portal"}, "unsupported scheme"),
        ({"DEBUG": "1", "DATABASE_URL": "not a url"}, "unsupported scheme"),
        ({"DEBUG": "1", "AGENT_GENERATOR_REQUEST_TIMEOUT": "soon"}, "is not a number"),
        ({"DEBUG": "1", "AGENT_GENERATOR_POLL_BUDGET": "-5"}, "at least"),
        ({"DEBUG": "1", "AGENT_GENERATOR_POLL_INTERVAL": "nan"}, "finite"),
        ({"DEBUG": "1", "AGENT_GENERATOR_MAX_CONSECUTIVE_ERRORS": "2.5"}, "whole number"),
        ({"DEBUG": "maybe"}, "is not a boolean"),
        ({"DEBUG": "1", "DATABASE_POOL_SIZE": "many"}, "is not a whole number"),
        ({"DEBUG": "1", "DATABASE_POOL_SIZE": "-1"}, "at least 0"),
        ({"DEBUG": "1", "REDIS_URL": "localhost:6379"}, "must start with redis://"),
        ({"DEBUG": "1", "AGENT_GENERATOR_URL": "ftp://x"}, "http(s) URL"),
        (
            {
                "DEBUG": "1",
                "AGENT_GENERATOR_POLL_INTERVAL": "10",
                "AGENT_GENERATOR_POLL_MAX_INTERVAL": "5",
            },
            "POLL_MAX_INTERVAL must be at least",
        ),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(env, base_dir=tmp_path)


def _clean_env(**env: str) -> dict[str, str]:
    """The real environment without the test suite's own settings, plus ``env``."""
    drop = {"DEBUG", "SECRET_KEY", "DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    clean = {k: v for k, v in os.environ.items() if k not in drop}
    clean.update(env)
    return clean


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = _clean_env(**env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "fix"),
    [
        ({"DEBUG": "false"}, "SECRET_KEY"),
        ({"DEBUG": "true", "DATABASE_URL": "mongodb://db/portal"}, "DATABASE_URL"),
        (
            {"DEBUG": "true", "AGENT_GENERATOR_REQUEST_TIMEOUT": "thirty"},
            "AGENT_GENERATOR_REQUEST_TIMEOUT",
        ),
    ],
)
def test_bad_configuration_stops_start_up_with_one_line(env, fix):
    result = _manage("check", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ")
    assert fix in lines[0]
    assert "Traceback" not in result.stderr


def test_asgi_application_refuses_bad_configuration_with_one_line():
    clean = _clean_env(DEBUG="false")
    result = subprocess.run(
        [sys.executable, "-c", "import copilot.asgi"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("configuration error: SECRET_KEY is not set")
    assert len(result.stderr.strip().splitlines()) == 1
