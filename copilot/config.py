"""Reading the portal's settings from the environment.

Every setting comes from an environment variable (or a ``.env`` file beside ``manage.py``)
through django-environ, and every one has a default that serves one machine: SQLite, the
in-memory channel layer, the job runner and the reference Agent Generator inside the web
process. The README's settings table lists them all; ``.env.example`` mirrors it.

Bad values stop start-up with :class:`ConfigError`, whose message is one line saying which
variable is wrong and what to put there. ``manage.py`` and ``copilot.asgi`` print that line and
exit with status 1 instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

#: Database URL schemes the portal supports, mapped to Django's engine.
DATABASE_SCHEMES = {
    "sqlite": "django.db.backends.sqlite3",
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "pgsql": "django.db.backends.postgresql",
}

#: The URL that means "the reference Agent Generator inside this process".
EMBEDDED_AGENT_GENERATOR = "embedded"

SQLITE_BUSY_TIMEOUT_SECONDS = 20

#: How long a database call waits for a pooled PostgreSQL connection before it fails.
POOL_TIMEOUT_SECONDS = 10

#: Channel-name prefix of each web process's stream hub (copilot.stream.consumer.StreamHub): one
#: channel carries the events of every job that process streams, so it gets a large capacity.
FANOUT_CHANNEL_PREFIX = "copilot-fanout"
LAYER_CAPACITY = {f"{FANOUT_CHANNEL_PREFIX}.*": 10_000}

#: How long one read from Redis may take. channels-redis waits for messages with a blocking
#: BZPOPMIN of 5 s; redis-py 8 gives every read a 5 s timeout by default, so the read gave up
#: just as Redis answered and the message it had popped was lost. Keep it above 5 s.
REDIS_SOCKET_TIMEOUT_SECONDS = 15


class ConfigError(ImproperlyConfigured):
    """A setting in the environment is missing or malformed (the message says which)."""


@dataclass(frozen=True, kw_only=True)
class PortalConfig:
    """The settings read from the environment, validated and typed."""

    debug: bool
    secret_key: str
    allowed_hosts: list[str]
    database: dict[str, Any]
    redis_url: str
    agent_generator_url: str
    agent_generator_request_timeout: float
    agent_generator_poll_interval: float
    agent_generator_poll_max_interval: float
    agent_generator_poll_budget: float
    agent_generator_max_consecutive_errors: int
    lease_seconds: float
    runner_concurrency: int
    runner_in_process: bool
    max_active_jobs_per_user: int
    heartbeat_seconds: float
    stream_max_seconds: float
    log_level: str


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default).strip()


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean: use true or false.")


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float = 0.0,
    integer: bool = False,
) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return int(default) if integer else float(default)
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name}={raw!r} is not {kind} (default: {default:g}).") from None
    if value != value or value in (float("inf"), float("-inf")) or value < minimum:  # NaN, inf
        raise ConfigError(f"{name}={raw!r} must be a finite number of at least {minimum:g}.")
    return value


def _tristate(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name, "").strip().lower()
    if raw in {"", "auto"}:
        return None
    return _bool(env, name, False)


def database_config(url: str, *, name: str = "DATABASE_URL", pool_size: int = 0) -> dict[str, Any]:
    """Turn a database URL into Django's ``DATABASES["default"]``, refusing unknown schemes.

    On PostgreSQL, ``pool_size`` > 0 gives each process a pool of up to that many connections
    (Django's psycopg pool): a request or a stream borrows one for each database call and
    gives it back, instead of connecting anew each time (``CONN_MAX_AGE=0``, which ASGI needs).
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in DATABASE_SCHEMES:
        known = ", ".join(f"{s}://" for s in DATABASE_SCHEMES)
        raise ConfigError(f"{name}={url!r} has an unsupported scheme; use one of {known}.")
    config = environ.Env.db_url_config(url)
    config["ENGINE"] = DATABASE_SCHEMES[scheme]
    if scheme == "sqlite":
        if not config.get("NAME"):
            raise ConfigError(
                f"{name}={url!r} names no SQLite file; use sqlite:////path/db.sqlite3."
            )
        config["OPTIONS"] = {
            # WAL lets readers (streams, admin) read while the runner writes; IMMEDIATE takes
            # the write lock at BEGIN so two writers queue on the busy timeout instead of
            # failing with "database is locked" halfway through a transaction.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
        }
    else:
        config.setdefault("CONN_MAX_AGE", 0)
        config["CONN_HEALTH_CHECKS"] = True
        if pool_size > 0:
            pool = {"min_size": 1, "max_size": pool_size, "timeout": POOL_TIMEOUT_SECONDS}
            config["OPTIONS"] = {**config.get("OPTIONS", {}), "pool": pool}
    return config


def channel_layer_config(*, redis_url: str) -> dict[str, Any]:
    """``CHANNEL_LAYERS["default"]``: channels-redis with ``redis_url``, else the in-memory one."""
    if not redis_url:
        return {
            "BACKEND": "copilot.stream.layers.LocalChannelLayer",
            "CONFIG": {"channel_capacity": LAYER_CAPACITY},
        }
    host = {"address": redis_url, "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS}
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [host], "channel_capacity": LAYER_CAPACITY},
    }


def load(env: Mapping[str, str], *, base_dir: Path) -> PortalConfig:
    """Validate the environment and return the portal's configuration.

    Raises :class:`ConfigError` with a one-line message on the first bad value.
    """
    debug = _bool(env, "DEBUG", False)
    secret_key = _text(env, "SECRET_KEY", "")
    if not secret_key:
        if not debug:
            raise ConfigError(
                "SECRET_KEY is not set and DEBUG is off: set SECRET_KEY to a long random "
                "string (python -c 'import secrets; print(secrets.token_urlsafe(50))')."
            )
        secret_key = "django-insecure-dev-only-key-never-use-in-production"
    hosts = [h.strip() for h in _text(env, "ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")]
    database_url = _text(env, "DATABASE_URL", f"sqlite:///{base_dir / 'db.sqlite3'}")
    redis_url = _text(env, "REDIS_URL", "")
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL={redis_url!r} must start with redis:// or rediss://.")
    generator_url = _text(env, "AGENT_GENERATOR_URL", EMBEDDED_AGENT_GENERATOR).rstrip("/")
    if generator_url != EMBEDDED_AGENT_GENERATOR and not generator_url.startswith(
        ("http://", "https://")
    ):
        raise ConfigError(
            f"AGENT_GENERATOR_URL={generator_url!r} must be an http(s) URL or 'embedded'."
        )
    in_process = _tristate(env, "COPILOT_RUNNER_IN_PROCESS")
    config = PortalConfig(
        debug=debug,
        secret_key=secret_key,
        allowed_hosts=[h for h in hosts if h],
        database=database_config(
            database_url,
            pool_size=_number(env, "DATABASE_POOL_SIZE", 20, minimum=0, integer=True),
        ),
        redis_url=redis_url,
        agent_generator_url=generator_url,
        agent_generator_request_timeout=_number(
            env, "AGENT_GENERATOR_REQUEST_TIMEOUT", 30, minimum=0.001
        ),
        agent_generator_poll_interval=_number(
            env, "AGENT_GENERATOR_POLL_INTERVAL", 2, minimum=0.001
        ),
        agent_generator_poll_max_interval=_number(
            env, "AGENT_GENERATOR_POLL_MAX_INTERVAL", 30, minimum=0.001
        ),
        agent_generator_poll_budget=_number(
            env, "AGENT_GENERATOR_POLL_BUDGET", 1800, minimum=0.001
        ),
        agent_generator_max_consecutive_errors=_number(
            env, "AGENT_GENERATOR_MAX_CONSECUTIVE_ERRORS", 5, minimum=1, integer=True
        ),
        lease_seconds=_number(env, "COPILOT_LEASE_SECONDS", 60, minimum=0.1),
        runner_concurrency=_number(env, "COPILOT_RUNNER_CONCURRENCY", 100, minimum=1, integer=True),
        # Unset ("auto"): run the runner inside the web process when there is no shared
        # channel layer (no REDIS_URL), since nothing else could run the jobs then.
        runner_in_process=(not redis_url) if in_process is None else in_process,
        max_active_jobs_per_user=_number(
            env, "COPILOT_MAX_ACTIVE_JOBS_PER_USER", 3, minimum=1, integer=True
        ),
        heartbeat_seconds=_number(env, "COPILOT_HEARTBEAT_SECONDS", 15, minimum=0.01),
        stream_max_seconds=_number(env, "COPILOT_STREAM_MAX_SECONDS", 240, minimum=0.1),
        log_level=_text(env, "LOG_LEVEL", "INFO").upper(),
    )
    if config.agent_generator_poll_max_interval < config.agent_generator_poll_interval:
        raise ConfigError(
            "AGENT_GENERATOR_POLL_MAX_INTERVAL must be at least AGENT_GENERATOR_POLL_INTERVAL."
        )
    if config.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"LOG_LEVEL={config.log_level!r} is not DEBUG, INFO, WARNING or ERROR.")
    return config
