"""A prototype of the fix proposed in bench/RESULTS.md, for measurement only (bench only).

``copilot.stream.layers.LocalChannelLayer.group_send`` wakes each receiver with its own
``loop.call_soon_threadsafe`` when the publisher runs on another thread (the embedded
runner does): one self-pipe write and one GIL hand-over per stream, N per event. This
subclass takes the lock once and wakes all receivers of a loop with ONE
``call_soon_threadsafe``. Nothing else changes. ``streams.py --variant batched`` runs ours
with it (through :mod:`bench.anchors.portal_settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict

from copilot.stream.layers import LocalChannelLayer, _Channel, _wake


def _wake_all(waiters: list[asyncio.Future]) -> None:
    for waiter in waiters:
        _wake(waiter)


class BatchedLocalChannelLayer(LocalChannelLayer):
    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        now = time.monotonic()
        cutoff = now - self.group_expiry
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = defaultdict(list)
        with self._lock:
            members = self._groups.get(group, {})
            for name, joined in members.items():
                if joined < cutoff:
                    continue
                queue = self._channels.setdefault(name, _Channel())
                while queue.messages and queue.messages[0][0] < now:
                    queue.messages.popleft()
                if len(queue.messages) >= self.get_capacity(name):
                    continue  # full: drops this one message, as the original does
                queue.messages.append((now + self.expiry, dict(message)))
                waiter, queue.waiter = queue.waiter, None
                if waiter is not None:
                    by_loop[waiter.get_loop()].append(waiter)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, waiters in by_loop.items():
            if loop is running:
                _wake_all(waiters)
            else:
                with contextlib.suppress(RuntimeError):  # the receivers' loop is closed
                    loop.call_soon_threadsafe(_wake_all, waiters)
