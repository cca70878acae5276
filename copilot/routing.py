"""The ASGI routing table: which app answers which connection or channel."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.urls import path, re_path

from copilot.runner.upstream import EMBEDDED_AGENT_GENERATOR, EMBEDDED_MOUNT, embedded_service
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


def build_application(django_app):
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
                AuthMiddlewareStack(JobEventStream.as_asgi()),
                name="job-events",
            ),
            re_path(r"", django_app),
        ]
    )
    if settings.AGENT_GENERATOR_URL == EMBEDDED_AGENT_GENERATOR:
        http = PrefixMount(prefix=EMBEDDED_MOUNT, app=embedded_service(), default=http)
    return ProtocolTypeRouter({"http": http})
