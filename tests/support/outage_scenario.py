"""What the database-outage scenarios (tests/scale/test_db_outage*.py) share: the reference
service with its counters, a Redis database per module, and the checks of the end state.

Each scenario cuts the database in the middle of running jobs (tests/support/db_outage.py) and
then asks the same questions: did every job complete, with one upstream submit each and a
gap-free event log? Kept here so the runner-only and the whole-portal scenarios check the
same things the same way.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Iterator

import httpx
from django.db import connection

from copilot.config import SQLITE_BUSY_TIMEOUT_SECONDS
from copilot.jobs.models import GenerationJob, JobEvent
from tests.conftest import redis_test_url
from tests.support.live import LiveProcess, free_port, run_server

__all__ = [
    "GOAL",
    "all_in",
    "assert_exact_logs",
    "assert_one_submit_each",
    "redis_url",
    "reference_service",
    "sqlite_seconds",
]

GOAL = "Every morning at 8am, fetch the top tech news and email a summary to me@example.com"


def redis_url(*, db: int) -> str:
    """The test Redis, on database ``db``: each scenario module its own, so that their channel
    layers never see each other's messages."""
    return redis_test_url().rsplit("/", 1)[0] + f"/{db}"


@contextlib.contextmanager
def reference_service(*, job_seconds: float) -> Iterator[LiveProcess]:
    """The reference Agent Generator on a free port, its jobs lasting ``job_seconds``, with
    ``GET /__stats`` on (for :func:`assert_one_submit_each`)."""
    port = free_port()
    args = ["-m", "agent_generator.reference", "--port", str(port)]
    args += ["--job-seconds", str(job_seconds), "--expose-stats"]
    with run_server(args=args, port=port) as reference:
        yield reference


def all_in(job_ids: list[str], status: str) -> bool:
    return GenerationJob.objects.filter(pk__in=job_ids, status=status).count() == len(job_ids)


def assert_exact_logs(job_ids: list[str]) -> None:
    """Each log is seq 1..N; each status appears once; no event stored twice in a row."""
    for job_id in job_ids:
        events = list(JobEvent.objects.filter(job_id=uuid.UUID(job_id)).order_by("seq"))
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), job_id
        transitions = [e.data["status"] for e in events if "previous" in e.data]
        assert transitions == ["queued", "submitting", "running", "completed"], transitions
        for before, after in itertools.pairwise(events):
            assert (before.type, before.data) != (after.type, after.data), (job_id, after.seq)
        assert GenerationJob.objects.get(pk=job_id).last_event_seq == len(events)


def assert_one_submit_each(reference: LiveProcess, job_ids: list[str]) -> None:
    """The reference service made one job per portal job: the outage caused no resubmit."""
    stats = httpx.get(f"{reference.url}/__stats", timeout=5).json()
    assert stats["jobs_created"] == len(job_ids), stats
    for job_id in job_ids:
        assert stats["submits_by_key"].get(f"{job_id}:1") == 1, (job_id, stats)


def sqlite_seconds(seconds: float, *, long: bool) -> float:
    """On SQLite a writer waits out a lock for the busy timeout before it errs: a ``long``
    outage there lasts past it, so the runner meets the error."""
    if connection.vendor == "sqlite" and long:
        return SQLITE_BUSY_TIMEOUT_SECONDS + 3
    return seconds
