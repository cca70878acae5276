"""``seq`` stays gap-free when many writers append to one job at once (real PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from copilot.jobs import events, services
from copilot.jobs.models import GenerationJob, JobEvent

WRITERS = 8
EVENTS_PER_WRITER = 15


def _append_many(job_id, writer: int) -> None:
    try:
        for n in range(EVENTS_PER_WRITER):
            events.event_append(
                job_id=job_id, type="progress", data={"writer": writer, "n": n}, publish=False
            )
    finally:
        connection.close()  # each writer thread has its own connection; give it back


def _close_connection() -> None:
    connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
async def test_concurrent_appends_keep_seq_gap_free(user):
    assert connection.vendor == "postgresql"
    job = await sync_to_async(services.job_submit)(
        user=user, kind="decompose", payload={"description": "Email me the news every morning"}
    )
    append = sync_to_async(_append_many, thread_sensitive=False)
    await asyncio.gather(*(append(job.id, w) for w in range(WRITERS)))

    def read() -> tuple[list[int], int, list[tuple[int, int]]]:
        seqs = list(JobEvent.objects.filter(job_id=job.id).values_list("seq", flat=True))
        rows = JobEvent.objects.filter(job_id=job.id, type="progress").order_by("seq")
        order = [(e.data["writer"], e.data["n"]) for e in rows]
        return seqs, GenerationJob.objects.get(pk=job.id).last_event_seq, order

    seqs, last, order = await sync_to_async(read)()
    await sync_to_async(_close_connection)()
    total = 1 + WRITERS * EVENTS_PER_WRITER  # the "queued" event, then every append
    assert seqs == list(range(1, total + 1))
    assert last == total
    # The writers really interleaved, and each one's own events kept their order.
    for writer in range(WRITERS):
        assert [n for w, n in order if w == writer] == list(range(EVENTS_PER_WRITER))
