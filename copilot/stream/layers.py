"""``LocalChannelLayer``: the embedded default channel layer, for one process.

Channels' own ``InMemoryChannelLayer`` has two limits this portal cannot live with:

- every ``send`` and ``receive`` first scans *all* channels for expired messages, so one
  event costs work proportional to every open stream of the process (about 2.75 s to reach
  2,000 streams on a 2-core machine);
- its queues belong to one event loop, yet in the embedded setup the job runner has its own
  thread and loop (see :mod:`copilot.runner.runner`) and must reach streams served by the web
  server's loop.

This layer keeps one deque per channel and wakes the receiver on the receiver's own loop
(``call_soon_threadsafe`` when the sender is on another thread), so a delivery costs O(1)
and any thread may send. Expiry is checked only for the channel being read. It is still one
process's layer: past one machine, use Redis (``REDIS_URL``), as the README explains.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer


@dataclass
class _Channel:
    messages: deque = field(default_factory=deque)  # (expires_at, message)
    waiter: asyncio.Future | None = None


class LocalChannelLayer(BaseChannelLayer):
    extensions = ["groups", "flush"]

    def __init__(self, expiry: float = 60, group_expiry: int = 86400, capacity: int = 100, **kw):
        super().__init__(expiry=expiry, capacity=capacity, **kw)
        # BaseChannelLayer.get_capacity reads the compiled form: (pattern, capacity) pairs.
        self.channel_capacity: list[tuple[re.Pattern[str], int]] = self.compile_capacities(
            self.channel_capacity
        )
        self.group_expiry = group_expiry
        self._channels: dict[str, _Channel] = {}
        self._groups: dict[str, dict[str, float]] = {}
        self._memberships: dict[str, set[str]] = {}  # channel -> its groups
        self._lock = threading.Lock()

    # -- channels ----------------------------------------------------------------------

    async def new_channel(self, prefix: str = "specific") -> str:
        return f"{prefix.rstrip('.')}.local!{secrets.token_hex(8)}"

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        if not self._deliver(channel, message):
            raise ChannelFull(channel)

    def _deliver(self, channel: str, message: dict) -> bool:
        """Queue one message and wake its receiver; False when the channel is full."""
        now = time.monotonic()
        with self._lock:
            queue = self._channels.setdefault(channel, _Channel())
            while queue.messages and queue.messages[0][0] < now:
                queue.messages.popleft()
            if len(queue.messages) >= self.get_capacity(channel):
                return False
            queue.messages.append((now + self.expiry, dict(message)))
            waiter, queue.waiter = queue.waiter, None
        if waiter is not None:
            loop = waiter.get_loop()
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                _wake(waiter)
            else:
                # RuntimeError: the receiver's loop is closed, nobody is listening.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_wake, waiter)
        return True

    async def receive(self, channel: str) -> dict:
        self.require_valid_channel_name(channel)
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                queue = self._channels.setdefault(channel, _Channel())
                now = time.monotonic()
                while queue.messages:
                    expires_at, message = queue.messages.popleft()
                    if expires_at >= now:
                        if not queue.messages and queue.waiter is None:
                            # Kept only while it holds messages or a reader waits: a reader
                            # that stops after this one (not cancelled) leaves nothing behind.
                            del self._channels[channel]
                        return message
                waiter = queue.waiter = loop.create_future()
            try:
                await waiter
            except asyncio.CancelledError:
                with self._lock:
                    if queue.waiter is waiter:
                        queue.waiter = None
                    if not queue.messages and self._channels.get(channel) is queue:
                        # The reader went away: forget its channel and group memberships.
                        del self._channels[channel]
                        self._discard_everywhere(channel)
                raise

    # -- groups ------------------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        with self._lock:
            self._groups.setdefault(group, {})[channel] = time.monotonic()
            self._memberships.setdefault(channel, set()).add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        with self._lock:
            self._discard(group, channel)

    def _discard(self, group: str, channel: str) -> None:
        members = self._groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self._groups[group]
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        cutoff = time.monotonic() - self.group_expiry
        with self._lock:
            members = self._groups.get(group, {})
            channels = [name for name, joined in members.items() if joined >= cutoff]
        for channel in channels:
            self._deliver(channel, message)  # a full channel drops this one message

    def _discard_everywhere(self, channel: str) -> None:
        for group in list(self._memberships.get(channel, ())):
            self._discard(group, channel)

    # -- housekeeping ------------------------------------------------------------------

    async def flush(self) -> None:
        with self._lock:
            self._channels.clear()
            self._groups.clear()
            self._memberships.clear()

    async def close(self) -> None:
        """Nothing to close: the layer holds no connection."""

    def stats(self) -> dict[str, int]:
        """How many channels and groups are open (for tests and monitoring)."""
        with self._lock:
            return {"channels": len(self._channels), "groups": len(self._groups)}


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
