"""Pushing job events through the channel layer.

The event is already committed to the database when it is published, so a lost or failed
publish only delays a reader until it replays the log (streams) or scans (runners).
"""

from __future__ import annotations

import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

RUNNER_CHANNEL = "agent-generator"


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
    except Exception:
        logger.warning("publish failed job=%s seq=%s", job_id, event.get("seq"), exc_info=True)


async def runner_wake(*, job_id: uuid.UUID | str) -> None:
    """Ask a runner to run the job now (``job.run``); a lost message costs one scan, no more.

    A runner in this process is woken directly; otherwise the message goes to the
    ``agent-generator`` channel, where any ``runworker`` process may take it.
    """
    from copilot.runner.runner import local_runner

    runner = local_runner()
    if runner is not None:
        runner.wake(job_id)
        return
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
