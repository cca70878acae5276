"""How each system under test publishes one stamped event (called from a worker thread).

The stamp, ``time.monotonic()`` taken before anything else, travels in the event's data as
``"bt"``; the benchmark's clients subtract it from their arrival time.
"""

from __future__ import annotations

import asyncio
import threading
import time

_background: dict = {}
_background_lock = threading.Lock()


def _publish_loop() -> asyncio.AbstractEventLoop:
    """One event loop in a thread of its own, where ours publishes (as the runner's loop)."""
    with _background_lock:
        if "loop" not in _background:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="bench-publish", daemon=True).start()
            _background["loop"] = loop
        return _background["loop"]


def portal_publish(key: str, *, keep_connection: bool = False) -> float:
    """Ours: append the event to the job's log, then publish it, as the runner does.

    The runner writes on its database thread, then awaits ``event_publish`` on its own loop;
    here the write runs in the calling thread and the publish on a long-lived loop thread.
    ``keep_connection``: keep the thread's database connection open between events, as the
    runner's database thread does (the separate publisher process); otherwise it is closed
    so that the server's connection count shows what its streams hold.
    """
    from django.db import close_old_connections

    from copilot.jobs.events import event_append
    from copilot.jobs.messaging import event_publish

    stamp = time.monotonic()
    data = {"status": "running", "terminal": False, "bt": stamp}
    event = event_append(job_id=key, type="status", data=data, publish=False)
    if not keep_connection:
        close_old_connections()
    future = asyncio.run_coroutine_threadsafe(
        event_publish(job_id=key, event=event.as_message()), _publish_loop()
    )
    future.result(timeout=60)
    return stamp


def eventstream_publish(key: str) -> float:
    """django-eventstream: ``send_event`` (stores the event first when storage is on)."""
    from django_eventstream import send_event

    stamp = time.monotonic()
    send_event(key, "message", {"bt": stamp})
    return stamp


def channels_publisher(loop_holder: dict) -> callable:
    """Plain Channels: ``group_send`` on the server's loop (its layer is not thread-safe)."""

    def publish(key: str) -> float:
        from channels.layers import get_channel_layer

        stamp = time.monotonic()
        message = {"type": "bench.event", "bt": stamp}
        layer = get_channel_layer()
        future = asyncio.run_coroutine_threadsafe(
            layer.group_send(key, message), loop_holder["loop"]
        )
        future.result(timeout=60)
        return stamp

    return publish
