"""The anchors' ASGI app: ``daphne bench.anchors.asgi:application`` (bench only).

- ``/es/events/?channel=K``: django-eventstream (through Django's ASGI handler);
- ``/plain/events?channel=K``: a plain Channels ``AsyncHttpConsumer`` on the
  ``InMemoryChannelLayer``, written the obvious way (group_add, then one ``send_body`` per
  message, with Channels' default dispatch);
- ``/__bench/…``: publish now (see :mod:`bench.anchors.endpoint`); which system publishes is
  chosen by ``BENCH_ANCHOR`` (``eventstream`` or ``channels``).
"""

import asyncio
import os
from urllib.parse import parse_qs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.anchors.settings")

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.routing import URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path, re_path

from bench.anchors.endpoint import BenchEndpoint
from bench.anchors.publishers import channels_publisher, eventstream_publish

django_app = get_asgi_application()
_loop: dict = {}


class PlainStream(AsyncHttpConsumer):
    """One SSE stream of one group, the way the Channels docs suggest."""

    group = ""

    async def http_request(self, message: dict) -> None:
        _loop.setdefault("loop", asyncio.get_running_loop())
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.group = (query.get("channel") or ["bench"])[0]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_headers(headers=[(b"content-type", b"text/event-stream")])
        await self.send_body(b": open\n\n", more_body=True)

    async def bench_event(self, message: dict) -> None:
        frame = f'event: message\ndata: {{"bt": {message["bt"]!r}}}\n\n'
        await self.send_body(frame.encode(), more_body=True)

    async def http_disconnect(self, message: dict) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        raise StopConsumer()


_publish = (
    channels_publisher(_loop)
    if os.environ.get("BENCH_ANCHOR") == "channels"
    else eventstream_publish
)
application = BenchEndpoint(
    app=URLRouter(
        [path("plain/events", PlainStream.as_asgi()), re_path(r"", django_app)],
    ),
    publish=_publish,
)
