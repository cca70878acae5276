"""A bench-only ASGI wrapper: ``POST /__bench/publish`` and ``POST /__bench/emit``.

It serves every other request with the wrapped application, so a benchmark can make a
server publish *now*, inside the server process, as its own code would (the in-memory
layers reach only their own process). Bodies are JSON:

- ``/__bench/publish`` ``{"key": K}``: publish one stamped event to K (a job id or a
  channel name); answers ``{"stamp": S}``, the ``time.monotonic()`` written in the event.
- ``/__bench/emit`` ``{"keys": [...], "period": P, "duration": D}``: in a thread, publish
  one stamped event to each key every P seconds (keys spread evenly over the period) for
  D seconds; answers when done with ``{"sent": n, "behind_max": s}``.

``publish(key) -> stamp`` is the system's own publish, called in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

Publish = Callable[[str], float]


def emit_every(*, publish: Publish, keys: list[str], period: float, duration: float) -> dict:
    """Publish to each key every ``period`` s, spread over the period, for ``duration`` s.

    Returns ``{"sent": n, "behind_max": s}``: how many events went out, and how far behind
    its schedule the publisher fell at worst (a publisher that cannot keep up shows here,
    not in the delivery delays, which start at each event's own stamp).
    """
    start = time.monotonic()
    sent = 0
    behind = 0.0
    count = len(keys)
    step = period / max(count, 1)
    index = 0
    while True:
        due = start + index * step
        if due - start >= duration:
            return {"sent": sent, "behind_max": behind}
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            behind = max(behind, -delay)
        try:
            publish(keys[index % count])
            sent += 1
        except Exception:
            logger.exception("bench emit failed key=%s", keys[index % count])
        index += 1


class BenchEndpoint:
    """Wraps ``app``; answers the two bench paths with ``publish``."""

    def __init__(self, *, app, publish: Publish) -> None:
        self.app = app
        self.publish = publish

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/__bench/"):
            return await self.app(scope, receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        data = json.loads(body or b"{}")
        loop = asyncio.get_running_loop()
        if path == "/__bench/publish":
            stamp = await loop.run_in_executor(None, self.publish, str(data["key"]))
            answer = {"stamp": stamp}
        elif path == "/__bench/emit":
            answer = await loop.run_in_executor(
                None,
                functools.partial(
                    emit_every,
                    publish=self.publish,
                    keys=[str(k) for k in data["keys"]],
                    period=float(data["period"]),
                    duration=float(data["duration"]),
                ),
            )
        else:
            answer = {"error": "unknown bench path"}
        payload = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
