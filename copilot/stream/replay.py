"""What an event stream reads from the database: the job (its owner checked), and its log a
page at a time, already encoded as SSE frames.

Each read is one short call through ``database_sync_to_async`` (no connection held between
them); a page is encoded there, in the database thread, so its events are never kept.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from channels.db import database_sync_to_async

from copilot.jobs.exceptions import JobNotFound
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.selectors import events_after, job_get
from copilot.stream.hub import event_frame

#: Replay in pages of this many events, so a long log never sits in memory at once.
REPLAY_PAGE = 500


def is_terminal(event: JobEvent | dict) -> bool:
    """Whether the event ends the job (its data says `terminal`)."""
    data = event.data if isinstance(event, JobEvent) else event.get("data")
    return bool(isinstance(data, dict) and data.get("terminal"))


def event_seq(event: JobEvent | dict) -> int:
    """An event's seq, stored (a JobEvent) or live (a message)."""
    return event.seq if isinstance(event, JobEvent) else event["seq"]


@dataclass(frozen=True)
class Page:
    """A page of the replay, encoded (its events are not kept)."""

    data: bytes
    last_seq: int
    terminal: bool
    full: bool


@database_sync_to_async
def load_job(job_id: uuid.UUID, user) -> GenerationJob | None:
    try:
        return job_get(job_id=job_id, user=user)
    except JobNotFound:
        return None


@database_sync_to_async
def replay_page(job_id: uuid.UUID, seq: int) -> Page | None:
    events = events_after(job_id=job_id, seq=seq, limit=REPLAY_PAGE)
    if not events:
        return None
    return Page(
        data=b"".join(event_frame(e) for e in events),
        last_seq=events[-1].seq,
        terminal=is_terminal(events[-1]),
        full=len(events) == REPLAY_PAGE,
    )
