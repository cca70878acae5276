"""The balancer's doors: ``GET /healthz`` (the process answers) and ``GET /readyz`` (it can work).

A plain ASGI app that :mod:`copilot.routing` puts in front of Django, so a probe is answered
before anything that would fail it for the wrong reason: Django's ``ALLOWED_HOSTS`` (a
balancer probes by IP address), ``SECURE_SSL_REDIRECT`` (probes come over plain http), and
sessions, CSRF, login and django-axes. Nothing in an answer is secret: check names and
``ok`` / ``fail`` / ``timeout``, never a host name, a URL or an exception's text (those go
to the log).

- ``/healthz``: ``200 ok``, with no database call and no lock: the event loop answers.
- ``/readyz``: each check at once, each within :data:`CHECK_TIMEOUT_SECONDS`; ``200`` when all
  are ``ok``, else ``503``. ``database``: ``SELECT 1`` in a thread of its own (on SQLite just
  the query); ``channel_layer``: a message sent to and received from a fresh channel of the
  process's layer; ``runner`` (only in a web process that runs the embedded runner): its
  thread runs and its event loop turns (:meth:`RunnerThread.ping`). A probe's cost does not
  grow with the jobs; concurrent probes share one database check, so a database that hangs
  holds one thread, not one per probe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable

from channels.layers import get_channel_layer
from django.db import connection

from copilot.runner.thread import RunnerThread

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"

#: How long each readiness check may take before it counts as ``timeout``: well under the
#: balancer's own probe timeout (docs/deploy.md suggests 5 s).
CHECK_TIMEOUT_SECONDS = 2.0

OK, FAIL, TIMEOUT = "ok", "fail", "timeout"

_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]


def database_ping() -> None:
    """``SELECT 1`` on the default database, then close this thread's connection."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()  # with a pool: back to the pool


class HealthApp:
    """``/healthz`` and ``/readyz``; every other request goes to ``app``.

    ``runner`` is the process's embedded runner (None where the process runs none).
    """

    def __init__(
        self,
        *,
        app,
        runner: RunnerThread | None = None,
        timeout: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self.app = app
        self.runner = runner
        self.timeout = timeout
        self._database_check: asyncio.Future[None] | None = None

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path not in (HEALTH_PATH, READY_PATH):
            return await self.app(scope, receive, send)
        head = scope.get("method") == "HEAD"
        if scope.get("method") not in ("GET", "HEAD"):
            return await _respond(
                send, 405, b"GET it.\n", b"text/plain; charset=utf-8", [(b"allow", b"GET, HEAD")]
            )
        if path == HEALTH_PATH:
            return await _respond(send, 200, b"ok\n", b"text/plain; charset=utf-8", head=head)
        ready, checks = await self.readiness()
        body = json.dumps({"status": OK if ready else FAIL, "checks": checks}).encode()
        await _respond(send, 200 if ready else 503, body, b"application/json", head=head)

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Run every check at once: (all ok, each check's state)."""
        checks: dict[str, Callable[[], Awaitable[object]]] = {
            "database": self._database,
            "channel_layer": self._channel_layer,
        }
        if self.runner is not None:
            checks["runner"] = self._runner
        states = await asyncio.gather(*(self._state(name, c) for name, c in checks.items()))
        result = dict(zip(checks, states, strict=True))
        if any(state != OK for state in states):
            logger.warning("not ready %s", " ".join(f"{k}={v}" for k, v in result.items()))
        return all(state == OK for state in states), result

    async def _state(self, name: str, check: Callable[[], Awaitable[object]]) -> str:
        try:
            answer = await asyncio.wait_for(check(), self.timeout)
        except TimeoutError:
            return TIMEOUT
        except Exception as exc:
            logger.warning("readiness check failed check=%s error=%s", name, exc)
            return FAIL
        return FAIL if answer is False else OK

    async def _database(self) -> None:
        # One check at a time, in a daemon thread of its own: never the thread Django's sync
        # views share, and a hung connect holds that one thread only (it is not cancelled).
        if self._database_check is None or self._database_check.done():
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()

            def run() -> None:
                try:
                    database_ping()
                except Exception as exc:  # handed to the waiting probe
                    loop.call_soon_threadsafe(_settle, future, None, exc)
                else:
                    loop.call_soon_threadsafe(_settle, future, None, None)

            self._database_check = future
            threading.Thread(target=run, name="copilot-readyz-db", daemon=True).start()
        await asyncio.shield(self._database_check)

    async def _channel_layer(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return  # no layer configured: nothing to wait on
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.ping"})
        message = await layer.receive(channel)
        if message.get("type") != "health.ping":
            raise RuntimeError("the layer answered another message")

    async def _runner(self) -> bool:
        assert self.runner is not None
        return await asyncio.wrap_future(self.runner.ping())


def _settle(future: asyncio.Future, result: object, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
    future.exception()  # retrieved: no "never retrieved" warning when nobody waits any more


async def _respond(
    send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    head: bool = False,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), *_HEADERS, *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})
