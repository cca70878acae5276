"""A stream client that records everything it is sent, for tests that compare it with the log.

    follower = EventFollower(url=f"{web.url}/jobs/{job_id}/events", headers=auth)
    follower.start()
    ...
    follower.join(30)
    assert follower.received == stored_log   # [(seq, type, data), ...]

Like a browser's ``EventSource``, it reconnects whenever a connection ends without the job's
terminal event, sending the last id it saw as ``Last-Event-ID``; unlike one (which gives up on
any answer but 200), it also tries again after a ``503`` (a database outage), every
:data:`RETRY_SECONDS` at most, until :attr:`EventFollower.give_up_after` has passed.

:class:`tests.support.sse_client` drops what it has already seen, as the browser's client
does; this one keeps every frame, so a test sees a duplicate or a gap the server sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx

__all__ = ["EventFollower"]

#: After a connection ends (a planned ``reconnect``, a drop), the next one opens this soon.
RECONNECT_SECONDS = 0.2
#: After a ``503`` or a refused connection, the next try comes after ``Retry-After``, capped
#: at this (a test waits less than a browser would).
RETRY_SECONDS = 1.0
#: A connection silent for this long is given up (and resumed), as a proxy or a watchdog
#: would: an open stream pings every heartbeat, but its opening may wait for the database.
SILENCE_SECONDS = 15.0


def _frames(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """The SSE frames of a response, each as ``{field: value}`` (comments left out)."""
    frame: dict[str, str] = {}
    for line in lines:
        if line == "":
            if frame:
                yield frame
            frame = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        frame[name] = f"{frame[name]}\n{value}" if name == "data" and name in frame else value


class EventFollower(threading.Thread):
    """Follows one job's stream to its terminal event, across reconnects; records it all."""

    def __init__(self, *, url: str, headers: dict[str, str], give_up_after: float = 90.0) -> None:
        super().__init__(daemon=True, name=f"follow {url}")
        self.url = url
        self.headers = headers
        self.give_up_after = give_up_after
        #: Every event with an id, as sent: (seq, type, data), duplicates included.
        self.received: list[tuple[int, str | None, object]] = []
        #: The status of each answer (200, 204, 503, ...), in order.
        self.statuses: list[int] = []
        self.transport_errors: list[str] = []
        self.planned_reconnects = 0
        self.finished = False
        self.error: str | None = None
        self._last_id = 0

    @property
    def connections(self) -> int:
        return len(self.statuses)

    def run(self) -> None:
        deadline = time.monotonic() + self.give_up_after
        try:
            while time.monotonic() < deadline:
                delay = self._connect_once()
                if self.finished or self.error is not None:
                    return
                time.sleep(delay)
            self.error = f"not finished within {self.give_up_after} s"
        except BaseException as exc:  # handed to the test
            self.error = repr(exc)

    def _connect_once(self) -> float:
        """One connection, read to its end; returns how long to wait before the next."""
        headers = dict(self.headers)
        if self._last_id:
            headers["Last-Event-ID"] = str(self._last_id)
        timeout = httpx.Timeout(40, read=SILENCE_SECONDS)
        try:
            with httpx.stream("GET", self.url, headers=headers, timeout=timeout) as response:
                self.statuses.append(response.status_code)
                if response.status_code == 204:
                    self.finished = True  # the job had ended, and we had it all
                    return 0
                if response.status_code == 503:
                    retry_after = float(response.headers.get("retry-after", RETRY_SECONDS))
                    return min(retry_after, RETRY_SECONDS)
                if response.status_code != 200:
                    self.error = f"status {response.status_code}: {response.read()!r}"
                    return 0
                for frame in _frames(response.iter_lines()):
                    if frame.get("event") == "reconnect":
                        self.planned_reconnects += 1
                        return RECONNECT_SECONDS
                    if "id" not in frame:
                        continue  # the snapshot
                    data = json.loads(frame.get("data", "null"))
                    self._last_id = int(frame["id"])
                    self.received.append((self._last_id, frame.get("event"), data))
                    if isinstance(data, dict) and data.get("terminal"):
                        self.finished = True
                        return 0
        except (httpx.HTTPError, OSError) as exc:
            self.transport_errors.append(repr(exc))
            return RETRY_SECONDS
        return RECONNECT_SECONDS  # ended without the terminal event or a reconnect
