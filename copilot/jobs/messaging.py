"""The seam between the floors: publish a job's event, wake a runner.

Services call it after a write commits; the runner and the stream listen on the names it
defines (the runner channel, a group per job, the prefix of the stream hubs' channels). It
imports nothing from the rest of the portal (but its own floor's counters, ``metrics``), so any
floor may use it.

The event is already committed to the database when it is published, so a lost or failed
message only delays a reader until it replays the log (streams) or scans (runners).
"""

from __future__ import annotations

import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from copilot.jobs.metrics import EVENTS_PUBLISHED

logger = logging.getLogger(__name__)

#: The channel every runner listens on for ``job.run`` (``runworker agent-generator``, and
#: the runner inside a web process or ``submit_job --wait``).
RUNNER_CHANNEL = "agent-generator"

#: Channel-name prefix of each web process's stream hub (:mod:`copilot.stream.hub`): one
#: channel carries the events of every job that process streams (``config`` sizes it).
FANOUT_CHANNEL_PREFIX = "copilot-fanout"


def job_group(job_id: uuid.UUID | str) -> str:
    """The group name that carries one job's events (``job.<hex id>``)."""
    return f"job.{uuid.UUID(str(job_id)).hex}"


def event_message(*, job_id: uuid.UUID | str, event: dict) -> dict:
    return {"type": "job.event", "job_id": str(job_id), "event": event}


async def event_publish(*, job_id: uuid.UUID | str, event: dict) -> None:
    """Send one committed event to everyone following the job; never raises."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(job_group(job_id), event_message(job_id=job_id, event=event))
        EVENTS_PUBLISHED.inc()
    except Exception:
        logger.warning("publish failed job=%s seq=%s", job_id, event.get("seq"), exc_info=True)


async def runner_wake(*, job_id: uuid.UUID | str) -> None:
    """Ask a runner to run the job now (``job.run`` on the runner channel, where whichever
    runner listens takes it); a lost message costs one scan, no more."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.send(RUNNER_CHANNEL, {"type": "job.run", "job_id": str(job_id)})
    except Exception:
        logger.warning("job.run not sent job=%s; the next scan will find it", job_id, exc_info=True)


def publish_on_commit(*, job_id: uuid.UUID | str, events: list[dict]) -> None:
    """From synchronous code: publish ``events`` once the current transaction commits."""

    def publish() -> None:
        for event in events:
            async_to_sync(event_publish)(job_id=job_id, event=event)

    transaction.on_commit(publish)


def wake_on_commit(*, job_id: uuid.UUID | str) -> None:
    """From synchronous code: send ``job.run`` once the current transaction commits."""
    transaction.on_commit(lambda: async_to_sync(runner_wake)(job_id=job_id))
