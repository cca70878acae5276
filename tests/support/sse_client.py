"""A stream client that follows the same rules as ``static/copilot/stream.js``, in Python.

For tests across processes: it resumes with ``Last-Event-ID``, reconnects after 1, 2, 4 s
(up to three failed attempts in a row; a connection that delivers something new resets the
count), reconnects at once on a planned ``reconnect``, stops on the terminal event or 204,
and may move to another server on each reconnect, as a load balancer would.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class FollowResult:
    events: list[dict] = field(default_factory=list)  # {"id", "type", "data"}
    connections: int = 0
    failed_attempts: int = 0
    finished: bool = False
    servers_used: list[str] = field(default_factory=list)


def follow(
    *,
    servers: list[str],
    job_id: str,
    cookie: str,
    timeout: float = 60,
    backoff: tuple[float, ...] = (1, 2, 4),
    on_event=None,
) -> FollowResult:
    """Follow one job's stream until its terminal event; raise if the rules give up."""
    result = FollowResult()
    last_id = 0
    attempt = 0
    deadline = time.monotonic() + timeout
    turn = 0
    while time.monotonic() < deadline:
        base = servers[turn % len(servers)]
        turn += 1
        result.connections += 1
        result.servers_used.append(base)
        had = last_id
        planned = False
        try:
            headers = {"Last-Event-ID": str(last_id), "Cookie": f"sessionid={cookie}"}
            with (
                httpx.Client(timeout=httpx.Timeout(10, read=10)) as client,
                client.stream("GET", f"{base}/jobs/{job_id}/events", headers=headers) as response,
            ):
                if response.status_code == 204:
                    result.finished = True
                    return result
                if response.status_code != 200:
                    raise httpx.HTTPStatusError(
                        f"status {response.status_code}", request=None, response=response
                    )
                event: dict = {}
                for line in response.iter_lines():
                    if line == "":
                        if "data" in event:
                            if event.get("type") == "reconnect":
                                planned = True
                                break
                            if event.get("id") is not None and event["id"] > last_id:
                                last_id = event["id"]
                                result.events.append(event)
                                if on_event is not None:
                                    on_event(event)
                                if event["data"].get("terminal"):
                                    result.finished = True
                                    return result
                        event = {}
                        continue
                    if line.startswith(":"):
                        continue
                    name, _, value = line.partition(": ")
                    if name == "id":
                        event["id"] = int(value)
                    elif name == "event":
                        event["type"] = value
                    elif name == "data":
                        event["data"] = json.loads(value)
        except (httpx.HTTPError, OSError):
            pass
        if planned:
            attempt = 0
            continue
        attempt = 0 if last_id > had else attempt + 1
        if attempt > len(backoff):
            raise AssertionError(f"gave up after {len(backoff)} attempts: {result}")
        result.failed_attempts += attempt > 0
        time.sleep(backoff[attempt - 1] if attempt else 0.1)
    raise AssertionError(f"stream did not finish within {timeout}s: {result}")
