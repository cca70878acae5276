"""Reading the portal's settings from the environment.

Every setting comes from an environment variable (or a ``.env`` file beside ``manage.py``)
through django-environ's readers (``Env.str``, ``Env.bool``, ``Env.int``, ``Env.list``,
``Env.db_url_config``), and every one has a default that serves one machine: SQLite, the
in-memory channel layer, the job runner and (with ``DEBUG`` on) the reference Agent Generator
inside the web process. The README's settings table lists them all; ``.env.example`` mirrors it.

What django-environ does not check is checked here: boolean words, ``auto``, numbers (ranges,
and floats, which ``Env.float`` misreads), URL schemes, origins, header names and the log
level; and that nothing meant for development runs with ``DEBUG`` off (a missing
``SECRET_KEY``, the embedded Agent Generator). Bad values stop start-up with
:class:`ConfigError`, whose message is one line saying which variable is wrong and what to put
there. ``manage.py`` and ``copilot.asgi`` print that line and exit with status 1 instead of a
traceback.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from copilot import mail_config as mail
from copilot.jobs.messaging import FANOUT_CHANNEL_PREFIX
from copilot.runner.upstream import EMBEDDED_AGENT_GENERATOR

#: Database URL schemes the portal supports, mapped to Django's engine.
DATABASE_SCHEMES = {
    "sqlite": "django.db.backends.sqlite3",
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "pgsql": "django.db.backends.postgresql",
}

SQLITE_BUSY_TIMEOUT_SECONDS = 20

#: Where the embedded Agent Generator keeps its jobs, under the project's folder.
EMBEDDED_STORE_DEFAULT = "var/agent-generator.sqlite3"

#: How long a database call waits for a pooled PostgreSQL connection before it fails. While
#: the database is away (a restart, a failover) every call waits this long: short enough for
#: a page to answer 503 promptly and for a waiting stream or runner to retry on its own.
POOL_TIMEOUT_SECONDS = 5
#: How long the pool retries (with backoff) one failed connection attempt before giving up on
#: it; the next call that needs a connection starts a new attempt at once. Short, so that the
#: pool reconnects as soon as the database is back, not at psycopg_pool's next backoff step
#: (which grows to minutes).
POOL_RECONNECT_SECONDS = 2
#: libpq's connection settings unless the URL's query string gives its own: a connection
#: attempt to a host that no longer answers (a failover that moved the address) gives up
#: after 5 s instead of the operating system's two minutes, and TCP keepalives find a
#: connection whose server vanished without a word within about a minute (30 + 3 x 10 s).
POSTGRES_CONNECTION_OPTIONS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

#: Each web process's stream hub (copilot.stream.hub) has one channel that carries the events
#: of every job that process streams, so it gets a large capacity.
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
    embedded_agent_generator_store: Path | None
    lease_seconds: float
    runner_dead_seconds: float
    runner_concurrency: int
    runner_in_process: bool
    max_active_jobs_per_user: int
    heartbeat_seconds: float
    stream_max_seconds: float
    max_streams_per_user: int
    login_failure_limit: int
    login_cooloff_minutes: float
    log_level: str
    log_format: str
    metrics_token: str
    # Job-end emails (copilot.jobs.notify): Django's EMAIL_* settings from EMAIL_URL, the
    # sender, and the portal's public base URL that links in them start with.
    email: dict[str, Any]
    default_from_email: str
    portal_base_url: str
    # Behind a TLS proxy (docs/deploy.md, "Production checklist"); each is Django's setting
    # of the same name in upper case.
    csrf_trusted_origins: list[str]
    secure_proxy_ssl_header: tuple[str, str] | None
    secure_ssl_redirect: bool
    secure_hsts_seconds: int
    secure_hsts_include_subdomains: bool
    secure_hsts_preload: bool
    session_cookie_secure: bool
    csrf_cookie_secure: bool


#: The words a boolean setting accepts, in any case. ``Env.bool`` reads every other word as
#: false (and any number but 0 as true), so a typo would turn a setting off without a word.
_BOOLEAN_WORDS = frozenset({"1", "true", "yes", "on", "0", "false", "no", "off"})

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: ``text``: readable lines; ``json``: one JSON object per line (copilot.logs.JsonFormatter).
LOG_FORMATS = ("text", "json")

#: An origin as Django's CSRF_TRUSTED_ORIGINS takes it: scheme://host[:port], nothing after
#: (a host may start with ``*.`` for its subdomains, or be an IPv6 address in brackets).
_ORIGIN = re.compile(
    r"https?://(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?", re.IGNORECASE
)

#: An HTTP header name as it reaches Django over ASGI: Django drops headers whose name has an
#: underscore (so they cannot pose as another), hence letters, digits and single hyphens.
_HEADER_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*", re.IGNORECASE)


def _reader(env: Mapping[str, str]) -> environ.Env:
    """django-environ's ``Env`` over ``env``, each value stripped and read as written.

    ``Env`` reads a value that starts with ``$`` as another variable's name (``SECRET_KEY=$ab``
    would read ``ab``; ``X=$X`` recurses until Python gives up). Every ``$`` is escaped here
    and ``escape_proxy`` unescapes it, so a value may start with ``$`` (Django's generated
    secret keys can).
    """
    reader = environ.Env()
    reader.ENVIRON = {name: value.strip().replace("$", r"\$") for name, value in env.items()}
    reader.escape_proxy = True
    return reader


def _bool(reader: environ.Env, name: str, default: bool, *, words: str = "true or false") -> bool:
    """``Env.bool`` for one of :data:`_BOOLEAN_WORDS`; unset or blank gives ``default``."""
    raw = reader.str(name, default="")
    if not raw:
        return default
    if raw.lower() not in _BOOLEAN_WORDS:
        raise ConfigError(f"{name}={raw!r} is not a boolean: use {words}.")
    return reader.bool(name)


def _auto_bool(reader: environ.Env, name: str) -> bool | None:
    """None when unset, blank or ``auto``; else :func:`_bool`."""
    if reader.str(name, default="").lower() in {"", "auto"}:
        return None
    return _bool(reader, name, False, words="auto, true or false")


def _number(
    reader: environ.Env,
    name: str,
    default: float,
    *,
    minimum: float,
    integer: bool = False,
) -> Any:
    """``Env.int`` or ``float()``, finite and at least ``minimum``; unset or blank: ``default``.

    Not ``Env.float``: it deletes every character but digits, ``,``, ``.`` and ``-`` before
    converting, so it reads ``1e3`` as 13, ``30s`` as 30 and ``1,5`` as 1.5.
    """
    raw = reader.str(name, default="")
    if not raw:
        return int(default) if integer else float(default)
    try:
        value = reader.int(name) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name}={raw!r} is not {kind} (default: {default:g}).") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name}={raw!r} must be a finite number of at least {minimum:g}.")
    return value


def _origins(reader: environ.Env, name: str) -> list[str]:
    """``Env.list`` of origins, each ``scheme://host[:port]`` (see :data:`_ORIGIN`)."""
    origins = [o for o in reader.list(name, cast=str.strip, default=[]) if o]
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"{name}: {origin!r} is not an origin: use scheme://host[:port], comma-separated "
                "(e.g. https://portal.example.com), with no path, not even a trailing /."
            )
    return origins


#: The shortest ``METRICS_TOKEN`` accepted: a guessable token would publish the figures.
METRICS_TOKEN_MIN_LENGTH = 16

#: What a bearer token may hold (RFC 6750's b64token), so it fits an Authorization header.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _metrics_token(reader: environ.Env, name: str) -> str:
    """The bearer token ``GET /metrics`` asks for; unset or blank: "" (no ``/metrics``)."""
    raw = reader.str(name, default="")
    if raw and (len(raw) < METRICS_TOKEN_MIN_LENGTH or not _BEARER_TOKEN.fullmatch(raw)):
        raise ConfigError(
            f"{name} must be at least {METRICS_TOKEN_MIN_LENGTH} characters of letters, digits "
            "and -._~+/ (python -c 'import secrets; print(secrets.token_urlsafe(32))'), or unset."
        )
    return raw


def _mail_setting(read: Callable[..., Any], reader: environ.Env, name: str, **kwargs: Any) -> Any:
    """``read(raw value of name, **kwargs)`` from :mod:`copilot.mail_config`, its ValueError
    made a ConfigError."""
    try:
        return read(reader.str(name, default=""), name=name, **kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _proxy_ssl_header(reader: environ.Env, name: str) -> tuple[str, str] | None:
    """Django's ``SECURE_PROXY_SSL_HEADER`` from a header's name; unset or blank: None.

    ``X-Forwarded-Proto`` gives ``("HTTP_X_FORWARDED_PROTO", "https")``: a request carrying
    that header with the value ``https`` counts as secure.
    """
    raw = reader.str(name, default="")
    if not raw:
        return None
    if not _HEADER_NAME.fullmatch(raw):
        raise ConfigError(
            f"{name}={raw!r} is not a header name: give the name of the header your TLS proxy "
            "sets to https, e.g. X-Forwarded-Proto."
        )
    return ("HTTP_" + raw.upper().replace("-", "_"), "https")


def _store_path(reader: environ.Env, name: str, *, base_dir: Path) -> Path | None:
    """The embedded Agent Generator's job file (relative: to ``base_dir``), or None for
    ``memory``; unset or blank: ``<base_dir>/var/agent-generator.sqlite3``."""
    raw = reader.str(name, default="")
    if raw.lower() == "memory":
        return None
    path = base_dir / (raw or EMBEDDED_STORE_DEFAULT)
    if path.is_dir():
        raise ConfigError(
            f"{name}={raw!r} is a directory: name a file (e.g. var/agent-generator.sqlite3), "
            "or memory."
        )
    return path


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
        config["OPTIONS"] = {**POSTGRES_CONNECTION_OPTIONS, **config.get("OPTIONS", {})}
        if pool_size > 0:
            pool = {
                "min_size": 1,
                "max_size": pool_size,
                "timeout": POOL_TIMEOUT_SECONDS,
                "reconnect_timeout": POOL_RECONNECT_SECONDS,
            }
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
    reader = _reader(env)
    debug = _bool(reader, "DEBUG", False)
    secret_key = reader.str("SECRET_KEY", default="")
    if not secret_key:
        if not debug:
            raise ConfigError(
                "SECRET_KEY is not set and DEBUG is off: set SECRET_KEY to a long random "
                "string (python -c 'import secrets; print(secrets.token_urlsafe(50))')."
            )
        secret_key = "django-insecure-dev-only-key-never-use-in-production"
    hosts = reader.list("ALLOWED_HOSTS", cast=str.strip, default=["127.0.0.1", "localhost"])
    database_url = reader.str("DATABASE_URL", default=f"sqlite:///{base_dir / 'db.sqlite3'}")
    redis_url = reader.str("REDIS_URL", default="")
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"REDIS_URL={redis_url!r} must start with redis://, rediss:// or unix://."
        )
    generator_url = reader.str("AGENT_GENERATOR_URL", default=EMBEDDED_AGENT_GENERATOR)
    generator_url = generator_url.rstrip("/")
    if generator_url != EMBEDDED_AGENT_GENERATOR and not generator_url.startswith(
        ("http://", "https://")
    ):
        raise ConfigError(
            f"AGENT_GENERATOR_URL={generator_url!r} must be an http(s) URL or 'embedded'."
        )
    if generator_url == EMBEDDED_AGENT_GENERATOR and not debug:
        # A rule-based demo, not a generator, and it would be served to the world.
        raise ConfigError(
            "AGENT_GENERATOR_URL is 'embedded' (the default) and DEBUG is off: the embedded "
            "reference service is for development; point AGENT_GENERATOR_URL at your Agent "
            "Generator, or at `python -m agent_generator.reference --port 8001` for a demo."
        )
    in_process = _auto_bool(reader, "COPILOT_RUNNER_IN_PROCESS")
    config = PortalConfig(
        debug=debug,
        secret_key=secret_key,
        allowed_hosts=[h for h in hosts if h],
        database=database_config(
            database_url,
            pool_size=_number(reader, "DATABASE_POOL_SIZE", 20, minimum=0, integer=True),
        ),
        redis_url=redis_url,
        agent_generator_url=generator_url,
        agent_generator_request_timeout=_number(
            reader, "AGENT_GENERATOR_REQUEST_TIMEOUT", 30, minimum=0.001
        ),
        agent_generator_poll_interval=_number(
            reader, "AGENT_GENERATOR_POLL_INTERVAL", 2, minimum=0.001
        ),
        agent_generator_poll_max_interval=_number(
            reader, "AGENT_GENERATOR_POLL_MAX_INTERVAL", 30, minimum=0.001
        ),
        agent_generator_poll_budget=_number(
            reader, "AGENT_GENERATOR_POLL_BUDGET", 1800, minimum=0.001
        ),
        agent_generator_max_consecutive_errors=_number(
            reader, "AGENT_GENERATOR_MAX_CONSECUTIVE_ERRORS", 5, minimum=1, integer=True
        ),
        embedded_agent_generator_store=_store_path(
            reader, "COPILOT_EMBEDDED_AGENT_GENERATOR_STORE", base_dir=base_dir
        ),
        # Retired (runner heartbeats replaced per-job lease expiry): still read and checked,
        # so an existing .env keeps working, but nothing uses it.
        lease_seconds=_number(reader, "COPILOT_LEASE_SECONDS", 60, minimum=0.1),
        runner_dead_seconds=_number(reader, "COPILOT_RUNNER_DEAD_SECONDS", 5, minimum=0.5),
        runner_concurrency=_number(
            reader, "COPILOT_RUNNER_CONCURRENCY", 100, minimum=1, integer=True
        ),
        # Unset ("auto"): run the runner inside the web process when there is no shared
        # channel layer (no REDIS_URL), since nothing else could run the jobs then.
        runner_in_process=(not redis_url) if in_process is None else in_process,
        max_active_jobs_per_user=_number(
            reader, "COPILOT_MAX_ACTIVE_JOBS_PER_USER", 3, minimum=1, integer=True
        ),
        heartbeat_seconds=_number(reader, "COPILOT_HEARTBEAT_SECONDS", 15, minimum=0.01),
        stream_max_seconds=_number(reader, "COPILOT_STREAM_MAX_SECONDS", 240, minimum=0.1),
        max_streams_per_user=_number(
            reader, "COPILOT_MAX_STREAMS_PER_USER", 20, minimum=1, integer=True
        ),
        # Failed logins for one username before its logins are refused (django-axes), and
        # for how long; see the AXES_* settings.
        login_failure_limit=_number(
            reader, "COPILOT_LOGIN_FAILURE_LIMIT", 5, minimum=1, integer=True
        ),
        login_cooloff_minutes=_number(reader, "COPILOT_LOGIN_COOLOFF_MINUTES", 15, minimum=0.1),
        log_level=reader.str("LOG_LEVEL", default="INFO").upper(),
        log_format=reader.str("LOG_FORMAT", default="text").lower() or "text",
        metrics_token=_metrics_token(reader, "METRICS_TOKEN"),
        email=_mail_setting(mail.email_settings, reader, "EMAIL_URL", base_dir=base_dir),
        default_from_email=_mail_setting(mail.from_email, reader, "DEFAULT_FROM_EMAIL"),
        portal_base_url=_mail_setting(mail.base_url, reader, "PORTAL_BASE_URL", debug=debug),
        csrf_trusted_origins=_origins(reader, "CSRF_TRUSTED_ORIGINS"),
        secure_proxy_ssl_header=_proxy_ssl_header(reader, "SECURE_PROXY_SSL_HEADER"),
        secure_ssl_redirect=_bool(reader, "SECURE_SSL_REDIRECT", False),
        secure_hsts_seconds=_number(reader, "SECURE_HSTS_SECONDS", 0, minimum=0, integer=True),
        secure_hsts_include_subdomains=_bool(reader, "SECURE_HSTS_INCLUDE_SUBDOMAINS", False),
        secure_hsts_preload=_bool(reader, "SECURE_HSTS_PRELOAD", False),
        # Secure cookies go back over HTTPS only: on wherever DEBUG is off, since a plain-http
        # development server (`make run`) could not keep a session with them.
        session_cookie_secure=_bool(reader, "SESSION_COOKIE_SECURE", not debug),
        csrf_cookie_secure=_bool(reader, "CSRF_COOKIE_SECURE", not debug),
    )
    if config.agent_generator_poll_max_interval < config.agent_generator_poll_interval:
        raise ConfigError(
            "AGENT_GENERATOR_POLL_MAX_INTERVAL must be at least AGENT_GENERATOR_POLL_INTERVAL."
        )
    if config.log_level not in _LOG_LEVELS:
        raise ConfigError(
            f"LOG_LEVEL={config.log_level!r} is not DEBUG, INFO, WARNING, ERROR or CRITICAL."
        )
    if config.log_format not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT={config.log_format!r} is not text or json.")
    return config
