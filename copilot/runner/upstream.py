"""How the portal reaches the Agent Generator: a configured client, and the embedded service.

With ``AGENT_GENERATOR_URL=embedded`` (the default) the reference Agent Generator runs inside
this process: the runner talks to it through ``httpx.ASGITransport`` and the web server also
mounts it at ``/agent-generator/`` for people who want to look at it. Its jobs are kept in a
SQLite file (``COPILOT_EMBEDDED_AGENT_GENERATOR_STORE``, default
``var/agent-generator.sqlite3``), so a job running when the process stops goes on after a
restart; it is still a demo, and a real deployment points ``AGENT_GENERATOR_URL`` at a real
service.
"""

from __future__ import annotations

import functools
import ssl

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from agent_generator import AgentGeneratorClient, PollPolicy
from agent_generator.reference import ReferenceApp, ReferenceSettings, create_app
from agent_generator.reference.store import StoreError
from copilot.jobs.metrics import upstream_request_observe

#: ``AGENT_GENERATOR_URL`` that runs the reference Agent Generator inside this process.
EMBEDDED_AGENT_GENERATOR = "embedded"
EMBEDDED_BASE_URL = "http://agent-generator.embedded"
EMBEDDED_MOUNT = "/agent-generator"


@functools.cache
def embedded_service() -> ReferenceApp:
    """The process's one reference Agent Generator (jobs of about a minute), its jobs in the
    file ``COPILOT_EMBEDDED_AGENT_GENERATOR_STORE`` (its folder made if missing), or in
    memory when that is None.

    Raises ImproperlyConfigured (one line; ``manage.py`` and ``copilot.asgi`` print it and
    exit 1, as they do a :class:`~copilot.config.ConfigError`) when the file cannot be opened.
    """
    path = settings.COPILOT_EMBEDDED_AGENT_GENERATOR_STORE
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        return create_app(settings=ReferenceSettings(store_path=path))
    except (OSError, StoreError) as exc:
        raise ImproperlyConfigured(f"COPILOT_EMBEDDED_AGENT_GENERATOR_STORE: {exc}") from None


def poll_policy() -> PollPolicy:
    return PollPolicy(
        interval=settings.AGENT_GENERATOR_POLL_INTERVAL,
        max_interval=settings.AGENT_GENERATOR_POLL_MAX_INTERVAL,
        budget=settings.AGENT_GENERATOR_POLL_BUDGET,
        max_consecutive_errors=settings.AGENT_GENERATOR_MAX_CONSECUTIVE_ERRORS,
    )


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context for every client of the process, with httpx's defaults.

    Building one reads the CA bundle (about 25 ms of CPU), and a runner opens one client per
    few jobs (``copilot.runner.runner.CLIENT_SHARD_SIZE``); an ``SSLContext`` is safe to share.
    """
    return httpx.create_ssl_context()


def client_create(*, max_connections: int) -> AgentGeneratorClient:
    """A client per the settings, with room for ``max_connections`` polls at once.

    Long-polls hold a connection for up to 25 s each, so the pool must be as large as the
    number of jobs a runner follows; httpx's default of 100 would queue polls behind others.
    """
    url = settings.AGENT_GENERATOR_URL
    if url == EMBEDDED_AGENT_GENERATOR:
        transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=embedded_service())
        url = EMBEDDED_BASE_URL
    else:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        transport = httpx.AsyncHTTPTransport(verify=ssl_context(), limits=limits, retries=0)
    return AgentGeneratorClient(
        base_url=url,
        timeout=settings.AGENT_GENERATOR_REQUEST_TIMEOUT,
        transport=transport,
        policy=poll_policy(),
        on_request=upstream_request_observe,  # copilot_upstream_request* (GET /metrics)
    )
