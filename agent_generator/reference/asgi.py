"""Raw ASGI 3 plumbing for the reference service: read a request, send an answer, and
sleep without outliving a client that hung up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

__all__ = [
    "BodyTooLargeError",
    "DisconnectWatcher",
    "Disconnected",
    "Request",
    "read_request",
    "route_path",
    "send_body",
    "send_json",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLargeError(Exception):
    """The request body is larger than the service accepts; ``declared`` is its
    ``Content-Length`` when that said so (None: found while reading)."""

    def __init__(self, declared: int | None = None) -> None:
        super().__init__(declared)
        self.declared = declared


class Disconnected(Exception):
    """The client went away before the answer was sent."""


@dataclass(frozen=True, kw_only=True)
class Request:
    """The parts of an HTTP request the service looks at."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


def route_path(scope: Scope) -> str:
    """``scope["path"]`` without the ``root_path`` a router mounted the app under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "") or ""
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


async def read_request(scope: Scope, receive: Receive, *, max_body: int) -> Request:
    """Read the whole body; raises :class:`Disconnected` or :class:`BodyTooLargeError`.

    A body over ``max_body`` bytes is refused before reading when its ``Content-Length``
    says so, else as soon as the chunks read pass it (the rest is never read).
    """
    declared = _content_length(scope)
    if declared is not None and declared > max_body:
        raise BodyTooLargeError(declared)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            raise BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        headers[name.decode("latin-1").lower()] = value.decode("latin-1")
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    return Request(
        method=scope["method"].upper(),
        path=route_path(scope),
        query=query,
        headers=headers,
        body=b"".join(chunks),
    )


def _content_length(scope: Scope) -> int | None:
    """The declared body size; None when absent or not a plain count (the reading decides)."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() and len(value) <= 18 else None
    return None


async def send_body(
    send: Send,
    *,
    status: int,
    body: bytes = b"",
    content_type: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    """Send a complete answer."""
    raw = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        raw.append((b"content-type", content_type.encode()))
    raw.extend((name.lower().encode(), value.encode()) for name, value in headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, *, status: int, data: Any, headers: Iterable[tuple[str, str]] = ()
) -> None:
    """Send ``data`` as ``application/json``."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    await send_body(
        send, status=status, body=body, content_type="application/json", headers=headers
    )


class DisconnectWatcher:
    """Sleeps that end early when the client hangs up (or when a job wakes them).

    The first sleep starts one ``receive()`` task that finishes with ``http.disconnect``;
    :meth:`close` cancels it when the request is done.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[Message] | None = None

    async def sleep(self, seconds: float, *, wake: asyncio.Future[None] | None = None) -> None:
        """Wait ``seconds`` (or until ``wake``); raises :class:`Disconnected` on hang-up."""
        if seconds <= 0:
            return
        if self._task is None:
            self._task = asyncio.ensure_future(self._receive())
        waiting: set[asyncio.Future[Any]] = {self._task}
        if wake is not None:
            waiting.add(wake)
        await asyncio.wait(waiting, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            # After a complete body the only message left to receive is http.disconnect.
            raise Disconnected

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
