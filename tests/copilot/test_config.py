"""Settings come from the environment, with defaults that serve one machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from copilot.config import ConfigError, load
from copilot.runner.upstream import EMBEDDED_AGENT_GENERATOR

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
    assert config.database["OPTIONS"]["pool"] == {
        "min_size": 1,
        "max_size": 20,
        "timeout": 5,
        "reconnect_timeout": 2,  # after a database restart, reconnect at once (not backoff)
    }
    assert config.database["CONN_MAX_AGE"] == 0  # the pool needs it (and ASGI wants it)
    # A vanished host costs 5 s per attempt, not the OS's two minutes; keepalives on.
    assert config.database["OPTIONS"]["connect_timeout"] == 5
    assert config.database["OPTIONS"]["keepalives"] == 1


def test_the_url_s_own_libpq_options_win(tmp_path):
    url = "postgres://db/portal?connect_timeout=2&sslmode=require"
    config = load({"DEBUG": "1", "DATABASE_URL": url}, base_dir=tmp_path)
    assert config.database["OPTIONS"]["connect_timeout"] == 2
    assert config.database["OPTIONS"]["sslmode"] == "require"
    assert config.database["OPTIONS"]["keepalives_idle"] == 30


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
    ("env", "variable", "message"),
    [
        ({"DEBUG": "false"}, "SECRET_KEY", "SECRET_KEY is not set and DEBUG is off"),
        (
            {"DEBUG": "1", "DATABASE_URL": "mysqlx://db/portal"},
            "DATABASE_URL",
            "unsupported scheme",
        ),
        ({"DEBUG": "1", "DATABASE_URL": "not a url"}, "DATABASE_URL", "unsupported scheme"),
        ({"DEBUG": "1", "DATABASE_URL": ""}, "DATABASE_URL", "unsupported scheme"),
        (
            {"DEBUG": "1", "AGENT_GENERATOR_REQUEST_TIMEOUT": "soon"},
            "AGENT_GENERATOR_REQUEST_TIMEOUT",
            "is not a number",
        ),
        (
            {"DEBUG": "1", "AGENT_GENERATOR_POLL_BUDGET": "-5"},
            "AGENT_GENERATOR_POLL_BUDGET",
            "at least",
        ),
        (
            {"DEBUG": "1", "AGENT_GENERATOR_POLL_INTERVAL": "nan"},
            "AGENT_GENERATOR_POLL_INTERVAL",
            "finite",
        ),
        (
            {"DEBUG": "1", "AGENT_GENERATOR_MAX_CONSECUTIVE_ERRORS": "2.5"},
            "AGENT_GENERATOR_MAX_CONSECUTIVE_ERRORS",
            "whole number",
        ),
        ({"DEBUG": "maybe"}, "DEBUG", "is not a boolean"),
        (
            {"DEBUG": "1", "DATABASE_POOL_SIZE": "many"},
            "DATABASE_POOL_SIZE",
            "is not a whole number",
        ),
        ({"DEBUG": "1", "DATABASE_POOL_SIZE": "-1"}, "DATABASE_POOL_SIZE", "at least 0"),
        ({"DEBUG": "1", "REDIS_URL": "localhost:6379"}, "REDIS_URL", "must start with redis://"),
        ({"DEBUG": "1", "REDIS_URL": "http://cache:6379"}, "REDIS_URL", "must start with redis://"),
        ({"DEBUG": "1", "AGENT_GENERATOR_URL": "ftp://x"}, "AGENT_GENERATOR_URL", "http(s) URL"),
        ({"DEBUG": "1", "AGENT_GENERATOR_URL": ""}, "AGENT_GENERATOR_URL", "http(s) URL"),
        (
            {"DEBUG": "1", "COPILOT_RUNNER_IN_PROCESS": "sometimes"},
            "COPILOT_RUNNER_IN_PROCESS",
            "use auto, true or false",
        ),
        ({"DEBUG": "1", "LOG_LEVEL": "verbose"}, "LOG_LEVEL", "is not DEBUG, INFO"),
        ({"DEBUG": "1", "LOG_LEVEL": ""}, "LOG_LEVEL", "is not DEBUG, INFO"),
        (
            {
                "DEBUG": "1",
                "AGENT_GENERATOR_POLL_INTERVAL": "10",
                "AGENT_GENERATOR_POLL_MAX_INTERVAL": "5",
            },
            "AGENT_GENERATOR_POLL_MAX_INTERVAL",
            "POLL_MAX_INTERVAL must be at least",
        ),
    ],
)
def test_bad_values_are_refused_with_one_line_naming_the_variable(tmp_path, env, variable, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        load(env, base_dir=tmp_path)
    assert str(refused.value).startswith(variable)
    assert "\n" not in str(refused.value)


# django-environ's Env.bool reads any number but 0 as true and every other word as false;
# the portal takes only these words and refuses the rest.
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on ", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("OFF", False),
        ("", False),  # blank: the default
    ],
)
def test_booleans_accept_the_eight_words(tmp_path, raw, expected):
    env = {"DEBUG": raw, "SECRET_KEY": "k" * 50, "AGENT_GENERATOR_URL": "http://generator"}
    config = load(env, base_dir=tmp_path)
    assert config.debug is expected


@pytest.mark.parametrize("raw", ["maybe", "ok", "y", "2", "-1", "00", "enabled", "truee"])
def test_booleans_refuse_every_other_word(tmp_path, raw):
    with pytest.raises(ConfigError, match=r"^DEBUG=.* is not a boolean: use true or false\.$"):
        load({"DEBUG": raw, "SECRET_KEY": "k" * 50}, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("raw", "redis_url", "expected"),
    [
        ("", "", True),  # auto, and no shared layer: in the web process
        ("auto", "redis://x", False),  # auto, and a shared layer: runworker processes
        (" AUTO ", "", True),
        ("yes", "redis://x", True),
        ("0", "", False),
    ],
)
def test_runner_in_process_is_auto_or_a_boolean(tmp_path, raw, redis_url, expected):
    env = {"DEBUG": "1", "COPILOT_RUNNER_IN_PROCESS": raw, "REDIS_URL": redis_url}
    assert load(env, base_dir=tmp_path).runner_in_process is expected


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("COPILOT_RUNNER_CONCURRENCY", " 7 ", 7),
        ("COPILOT_RUNNER_CONCURRENCY", "1", 1),
        ("COPILOT_RUNNER_CONCURRENCY", "", 100),  # blank: the default
        ("COPILOT_LEASE_SECONDS", "12.5", 12.5),
        ("COPILOT_LEASE_SECONDS", " 30 ", 30.0),
        ("COPILOT_LEASE_SECONDS", "0.1", 0.1),
        ("COPILOT_LEASE_SECONDS", "1e3", 1000.0),  # Env.float would read 13
        ("COPILOT_LEASE_SECONDS", "", 60.0),
    ],
)
def test_numbers_accepted(tmp_path, name, raw, expected):
    config = load({"DEBUG": "1", name: raw}, base_dir=tmp_path)
    value = {
        "COPILOT_RUNNER_CONCURRENCY": config.runner_concurrency,
        "COPILOT_LEASE_SECONDS": config.lease_seconds,
    }[name]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("COPILOT_RUNNER_CONCURRENCY", "2.5", "is not a whole number"),
        ("COPILOT_RUNNER_CONCURRENCY", "ten", "is not a whole number"),
        ("COPILOT_RUNNER_CONCURRENCY", "0", "at least 1"),
        ("COPILOT_MAX_ACTIVE_JOBS_PER_USER", "-3", "at least 1"),
        ("COPILOT_LEASE_SECONDS", "30s", "is not a number"),  # Env.float would read 30
        ("COPILOT_LEASE_SECONDS", "1,5", "is not a number"),  # Env.float would read 1.5
        ("COPILOT_LEASE_SECONDS", "1.2.3", "is not a number"),  # Env.float would read 12.3
        ("COPILOT_LEASE_SECONDS", "inf", "finite"),
        ("COPILOT_LEASE_SECONDS", "0.05", "at least 0.1"),
        ("COPILOT_HEARTBEAT_SECONDS", "0", "at least 0.01"),
    ],
)
def test_numbers_refused(tmp_path, name, raw, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        load({"DEBUG": "1", name: raw}, base_dir=tmp_path)
    assert str(refused.value).startswith(f"{name}={raw!r}")


def test_values_are_read_as_written_even_with_a_dollar(tmp_path):
    # django-environ alone reads "$NAME" as the value of the variable NAME (and "X=$X" recurses).
    key = "$k" + "k" * 48 + r"\$"
    config = load(
        {
            "SECRET_KEY": f" {key} ",
            "ALLOWED_HOSTS": "$HOME",
            "HOME": "/root",
            "AGENT_GENERATOR_URL": "http://generator",
        },
        base_dir=tmp_path,
    )
    assert config.secret_key == key
    assert config.allowed_hosts == ["$HOME"]
    for raw in ("$DATABASE_POOL_SIZE", "$COPILOT_RUNNER_CONCURRENCY"):
        env = {"DEBUG": "1", "DATABASE_POOL_SIZE": "8", "COPILOT_RUNNER_CONCURRENCY": raw}
        with pytest.raises(ConfigError, match="is not a whole number"):
            load(env, base_dir=tmp_path)


def test_allowed_hosts_are_trimmed_and_blanks_dropped(tmp_path):
    hosts = load({"DEBUG": "1", "ALLOWED_HOSTS": " a.example , ,b.example,,"}, base_dir=tmp_path)
    none = load({"DEBUG": "1", "ALLOWED_HOSTS": ""}, base_dir=tmp_path)
    assert hosts.allowed_hosts == ["a.example", "b.example"]
    assert none.allowed_hosts == []


def test_urls_and_log_level_accepted(tmp_path):
    config = load(
        {
            "DEBUG": "1",
            "REDIS_URL": "unix:///run/redis.sock",
            "AGENT_GENERATOR_URL": "http://generator:8001//",
            "LOG_LEVEL": " warning ",
        },
        base_dir=tmp_path,
    )
    assert config.redis_url == "unix:///run/redis.sock"
    assert config.agent_generator_url == "http://generator:8001"
    assert config.log_level == "WARNING"


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


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "fix"),
    [
        ({"DEBUG": "false"}, "SECRET_KEY"),
        ({"DEBUG": "true", "DATABASE_URL": "mongodb://db/portal"}, "DATABASE_URL"),
        (
            {"DEBUG": "true", "AGENT_GENERATOR_REQUEST_TIMEOUT": "thirty"},
            "AGENT_GENERATOR_REQUEST_TIMEOUT",
        ),
        ({"DEBUG": "ok"}, "DEBUG="),  # Env.bool alone would read it as true
        ({"DEBUG": "true", "COPILOT_RUNNER_CONCURRENCY": "2.5"}, "COPILOT_RUNNER_CONCURRENCY="),
        ({"DEBUG": "true", "COPILOT_LEASE_SECONDS": "30s"}, "COPILOT_LEASE_SECONDS="),
        ({"DEBUG": "true", "COPILOT_RUNNER_IN_PROCESS": "maybe"}, "COPILOT_RUNNER_IN_PROCESS="),
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


@pytest.mark.slow
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
