"""The ASGI routing table: which app answers which connection or channel."""

from __future__ import annotations

from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.http.request import split_domain_port, validate_host
from django.urls import path, re_path

from copilot.ops.health import HealthApp
from copilot.ops.metrics import MetricsMount
from copilot.runner.thread import RunnerThread
from copilot.runner.upstream import EMBEDDED_AGENT_GENERATOR, EMBEDDED_MOUNT, embedded_service
from copilot.stream.auth import stream_auth_stack
from copilot.stream.consumer import JobEventStream


class PrefixMount:
    """Requests under ``prefix`` go to ``app`` (``root_path`` set), the rest to ``default``."""

    def __init__(self, *, prefix: str, app, default) -> None:
        self.prefix = prefix.rstrip("/")
        self.app = app
        self.default = default

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == self.prefix or path.startswith(self.prefix + "/")):
            scope = dict(scope, root_path=scope.get("root_path", "") + self.prefix)
            return await self.app(scope, receive, send)
        return await self.default(scope, receive, send)


class AllowedHostsOnly:
    """``app`` for requests whose ``Host`` is in ``ALLOWED_HOSTS``; 400 for the others.

    Django checks the host of its own views (``request.get_host()``); an ASGI app mounted
    beside it does not, so a page on another site could reach it through DNS rebinding. Same
    rule as Django's: with DEBUG on and no ALLOWED_HOSTS, localhost's names only.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if _host_allowed(scope):
            return await self.app(scope, receive, send)
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": b"Bad Request: Host not allowed\n"})


def _host_allowed(scope) -> bool:
    hosts = [value for name, value in scope.get("headers", ()) if name.lower() == b"host"]
    if len(hosts) != 1:
        return False
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(hosts[0].decode("latin-1"))
    return bool(domain) and validate_host(domain, allowed)


def build_application(django_app, *, runner: RunnerThread | None = None):
    """The process's ASGI app around ``django_app``; ``runner``: its embedded runner, if any."""
    # The portal's few static files (CSS, stream.js) are served by the app itself, so any
    # ASGI server shows a working page; behind nginx, `collectstatic` and a /static/ location
    # can take that over (docs/deploy.md).
    django_app = ASGIStaticFilesHandler(django_app)
    http = URLRouter(
        [
            # Served by a Channels consumer, not a Django view: Django's ASGI handler keeps
            # a thread per request for as long as its response lasts (see copilot.stream.consumer).
            path(
                "jobs/<uuid:job_id>/events",
                stream_auth_stack(JobEventStream.as_asgi()),
                name="job-events",
            ),
            re_path(r"", django_app),
        ]
    )
    # The embedded reference service, to look at while developing: never with DEBUG off
    # (where copilot.config refuses it anyway), and only for this site's own host names.
    if settings.DEBUG and settings.AGENT_GENERATOR_URL == EMBEDDED_AGENT_GENERATOR:
        app = AllowedHostsOnly(embedded_service())
        http = PrefixMount(prefix=EMBEDDED_MOUNT, app=app, default=http)
    # GET /metrics for Prometheus, with `Authorization: Bearer <METRICS_TOKEN>` only (else
    # Django's 404); no session, no host check: it is scraped by address (copilot.ops.metrics).
    http = MetricsMount(default=http)
    # /healthz and /readyz first, before Django's host check, HTTPS redirect and middleware:
    # a balancer probes by IP address over plain http (copilot.ops.health).
    http = HealthApp(app=http, runner=runner)
    return ProtocolTypeRouter({"http": http})
