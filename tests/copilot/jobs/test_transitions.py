"""Named transitions: each allows exactly its changes, logs exactly its event, on every database.

``job`` is the caller's copy. On PostgreSQL a current copy is written in one statement; a stale
one (the row moved on) falls back to the locked path, which writes against the row as it is.
These tests run in both passes (``alldb``) and spell the expected event data out, so the data
is the same on SQLite and PostgreSQL, and through both paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from copilot.jobs import services, transitions
from copilot.jobs.exceptions import IllegalTransition
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.transitions import ALLOWED_TRANSITIONS, Transition

Status = GenerationJob.Status
pytestmark = [pytest.mark.alldb, pytest.mark.django_db]

RESULT = {"type": "vague_goal", "suggested_goal": "x"}

#: Each named transition, called with what it needs: the statuses it may leave, and where to.
TRANSITIONS: dict[str, tuple[Callable[[GenerationJob], Transition], set[str], str]] = {
    "mark_submitting": (
        lambda job: transitions.job_mark_submitting(job=job),
        {Status.QUEUED},
        Status.SUBMITTING,
    ),
    "mark_running": (
        lambda job: transitions.job_mark_running(job=job, upstream_job_id="up-1"),
        {Status.SUBMITTING},
        Status.RUNNING,
    ),
    "complete": (
        lambda job: transitions.job_complete(job=job, result=RESULT),
        {Status.RUNNING},
        Status.COMPLETED,
    ),
    "fail": (
        lambda job: transitions.job_fail(job=job, error_type="job_failed", error_message="boom"),
        {Status.QUEUED, Status.SUBMITTING, Status.RUNNING},
        Status.FAILED,
    ),
    "time_out": (
        lambda job: transitions.job_time_out(job=job, error_message="late"),
        {Status.SUBMITTING, Status.RUNNING},
        Status.TIMED_OUT,
    ),
    "cancel_confirmed": (
        lambda job: transitions.job_cancel_confirmed(job=job, error_message="stop"),
        {Status.QUEUED, Status.SUBMITTING, Status.RUNNING},
        Status.CANCELLED,
    ),
    "requeue": (
        lambda job: transitions.job_requeue(job=job, by="alice"),
        {Status.FAILED, Status.CANCELLED, Status.TIMED_OUT},
        Status.QUEUED,
    ),
}

#: How a job reaches each status (after being submitted).
PATHS = {
    Status.QUEUED: [],
    Status.SUBMITTING: ["mark_submitting"],
    Status.RUNNING: ["mark_submitting", "mark_running"],
    Status.COMPLETED: ["mark_submitting", "mark_running", "complete"],
    Status.FAILED: ["mark_submitting", "fail"],
    Status.CANCELLED: ["cancel_confirmed"],
    Status.TIMED_OUT: ["mark_submitting", "time_out"],
}


def job_at(user, status: str) -> GenerationJob:
    """A submitted job moved to ``status``; returns a current copy of it."""
    job = services.job_submit(
        user=user, kind="decompose", payload={"description": "Email me the weather every day"}
    )
    for name in PATHS[status]:
        job = TRANSITIONS[name][0](job).job
    return GenerationJob.objects.get(pk=job.pk)


def row_state(job_id) -> tuple:
    """Everything a transition may write, as stored."""
    return tuple(
        GenerationJob.objects.filter(pk=job_id).values_list(
            "status",
            "attempt",
            "last_event_seq",
            "updated_at",
            "upstream_job_id",
            "progress",
            "result",
            "error_type",
            "error_message",
            "cancel_requested_at",
            "started_at",
            "finished_at",
            "lease_owner",
            "lease_expires_at",
        )
    )


def expect_path(queries: CaptureQueriesContext, *, one_statement: bool) -> None:
    """On PostgreSQL: one statement for a current copy; the locked path for a stale one."""
    if connection.vendor != "postgresql":
        return  # (SQLite always takes the locked path.)
    sqls = [q["sql"] for q in queries]
    if one_statement:
        assert len(sqls) == 1 and sqls[0].startswith("WITH job AS (UPDATE"), sqls
    else:
        assert len(sqls) > 1 and any("FOR UPDATE" in sql for sql in sqls), sqls


def test_the_named_transitions_are_the_state_machine():
    for status, targets in ALLOWED_TRANSITIONS.items():
        named = {to for _, sources, to in TRANSITIONS.values() if status in sources}
        assert named == set(targets), status


@pytest.mark.parametrize(
    ("name", "status"),
    [(name, s) for name, (_, sources, _) in TRANSITIONS.items() for s in sorted(sources)],
)
def test_each_transition_moves_a_job_from_each_status_it_allows(user, name, status):
    transition, _, to = TRANSITIONS[name]
    job = job_at(user, status)
    change = transition(job)
    assert (change.previous, change.event.data["previous"]) == (status, status)
    assert (change.job.status, change.event.data["status"]) == (to, to)
    assert row_state(job.pk)[0][0] == to


@pytest.mark.parametrize("copy", ["current", "stale"])
@pytest.mark.parametrize(
    ("name", "status"),
    [
        (name, s)
        for name, (_, sources, _) in TRANSITIONS.items()
        for s in Status.values
        if s not in sources
    ],
)
def test_each_transition_refuses_a_change_its_state_does_not_allow(user, name, status, copy):
    transition, sources, to = TRANSITIONS[name]
    job = job_at(user, status)
    if copy == "stale":
        job.status = sorted(sources)[0]  # the caller believes the change is allowed
    before = row_state(job.pk)
    with pytest.raises(IllegalTransition) as info:
        transition(job)
    assert (info.value.current, info.value.requested) == (status, to)
    assert row_state(job.pk) == before
    assert JobEvent.objects.filter(job_id=job.pk).count() == before[0][2]


def test_a_stale_copy_is_written_against_the_row_as_it_is(user):
    job = job_at(user, Status.SUBMITTING)
    stale = GenerationJob.objects.get(pk=job.pk)  # what a runner read before the next write
    transitions.job_mark_running(job=job, upstream_job_id="up-1")
    with CaptureQueriesContext(connection) as queries:
        change = transitions.job_fail(job=stale, error_type="job_failed", error_message="boom")
    expect_path(queries, one_statement=False)
    assert change.previous == Status.RUNNING
    assert change.event.data == {
        "status": "failed",
        "previous": "running",
        "attempt": 1,
        "terminal": True,
        "error_type": "job_failed",
        "error_message": "boom",
    }
    stored = GenerationJob.objects.get(pk=job.pk)
    assert change.job.updated_at == stored.updated_at
    assert (change.job.status, change.job.upstream_job_id, change.job.last_event_seq) == (
        stored.status,
        "up-1",
        4,
    )
    assert JobEvent.objects.get(pk=change.event.pk).data == change.event.data


def test_a_copy_of_an_earlier_attempt_requeues_the_latest_one(user):
    job = job_at(user, Status.FAILED)
    stale = GenerationJob.objects.get(pk=job.pk)  # attempt 1
    job = transitions.job_requeue(job=job, by="alice").job
    job = transitions.job_fail(job=job, error_type="job_failed", error_message="again").job
    assert (stale.status, stale.attempt, job.attempt) == (Status.FAILED, 1, 2)
    with CaptureQueriesContext(connection) as queries:
        change = transitions.job_requeue(job=stale, by="bob")
    expect_path(queries, one_statement=False)
    assert (change.job.status, change.job.attempt, change.previous) == (Status.QUEUED, 3, "failed")
    assert change.event.data == {
        "status": "queued",
        "previous": "failed",
        "attempt": 3,
        "terminal": False,
        "by": "bob",
    }


def test_a_cancel_confirmed_keeps_the_time_it_was_requested(user):
    job = job_at(user, Status.RUNNING)  # the runner's copy: no cancel requested yet
    requested = services.job_cancel(job_id=job.id, by=user).cancel_requested_at
    assert requested is not None and job.cancel_requested_at is None
    with CaptureQueriesContext(connection) as queries:
        change = transitions.job_cancel_confirmed(job=job, error_message="stop")
    # Status and attempt still match: the one statement on PostgreSQL, which keeps the time.
    expect_path(queries, one_statement=True)
    assert change.job.cancel_requested_at == requested
    assert GenerationJob.objects.get(pk=job.pk).cancel_requested_at == requested
    # Nobody asked before: the confirmation is the request.
    other = transitions.job_cancel_confirmed(job=job_at(user, Status.QUEUED), error_message="x")
    assert other.job.cancel_requested_at == other.job.finished_at is not None


def test_a_runner_writes_under_its_lease_and_publishes_itself(user):
    job = job_at(user, Status.SUBMITTING)
    GenerationJob.objects.filter(pk=job.pk).update(lease_owner="runner-a")
    job.refresh_from_db()
    pending = len(connection.run_on_commit)  # publishes waiting for the test's transaction
    with CaptureQueriesContext(connection) as queries:
        change = transitions.job_mark_running(
            job=job, upstream_job_id="up-1", lease_owner="runner-a", publish=False
        )
    expect_path(queries, one_statement=True)
    assert change.job.lease_owner == "runner-a"  # not an end: the lease stays
    assert len(connection.run_on_commit) == pending  # nothing more to publish
    end = transitions.job_complete(job=change.job, result=RESULT, lease_owner="runner-a")
    assert (end.job.lease_owner, end.job.lease_expires_at) == ("", None)
    assert len(connection.run_on_commit) == pending + 1  # publish=True: on commit


# --- the event data, and the row, of each transition --------------------------------------


def _base(status: str, previous: str, attempt: int, terminal: bool) -> dict[str, Any]:
    return {"status": status, "previous": previous, "attempt": attempt, "terminal": terminal}


#: name: (the status it starts from, the call, its event's type, its event's exact data).
#: Every job here is in its second attempt, so that a copy one attempt behind is stale.
EVENTS = {
    "mark_submitting": (
        Status.QUEUED,
        lambda job: transitions.job_mark_submitting(job=job),
        "status",
        _base("submitting", "queued", 2, False),
    ),
    "mark_running": (
        Status.SUBMITTING,
        lambda job: transitions.job_mark_running(job=job, upstream_job_id="up-9"),
        "status",
        {**_base("running", "submitting", 2, False), "upstream_job_id": "up-9"},
    ),
    "complete": (
        Status.RUNNING,
        lambda job: transitions.job_complete(job=job, result=RESULT),
        "result",
        {**_base("completed", "running", 2, True), "result": RESULT},
    ),
    "fail": (
        Status.RUNNING,
        lambda job: transitions.job_fail(job=job, error_type="job_failed", error_message="boom"),
        "error",
        {
            **_base("failed", "running", 2, True),
            "error_type": "job_failed",
            "error_message": "boom",
        },
    ),
    "fail_upstream": (
        Status.SUBMITTING,
        lambda job: transitions.job_fail(
            job=job,
            error_type="job_failed",
            error_message="boom",
            upstream_error_type="llm_timeout",
        ),
        "error",
        {
            **_base("failed", "submitting", 2, True),
            "error_type": "job_failed",
            "error_message": "boom",
            "upstream_error_type": "llm_timeout",
        },
    ),
    "time_out": (
        Status.RUNNING,
        lambda job: transitions.job_time_out(job=job, error_message="late"),
        "error",
        {
            **_base("timed_out", "running", 2, True),
            "error_type": "poll_timeout",
            "error_message": "late",
        },
    ),
    "cancel_confirmed": (
        Status.RUNNING,
        lambda job: transitions.job_cancel_confirmed(
            job=job, error_type="upstream_cancelled", error_message="stopped upstream"
        ),
        "status",
        {
            **_base("cancelled", "running", 2, True),
            "error_type": "upstream_cancelled",
            "error_message": "stopped upstream",
        },
    ),
    "cancel_confirmed_by": (
        Status.QUEUED,
        lambda job: transitions.job_cancel_confirmed(job=job, error_message="stop", by="alice"),
        "status",
        {
            **_base("cancelled", "queued", 2, True),
            "error_type": "cancelled",
            "error_message": "stop",
            "by": "alice",
        },
    ),
    "requeue": (
        Status.TIMED_OUT,
        lambda job: transitions.job_requeue(job=job, by="alice"),
        "retry",
        {**_base("queued", "timed_out", 3, False), "by": "alice"},
    ),
}


def second_attempt_at(user, status: str) -> GenerationJob:
    job = job_at(user, Status.FAILED)
    job = transitions.job_requeue(job=job, by="setup").job
    for name in PATHS[status]:
        job = TRANSITIONS[name][0](job).job
    return GenerationJob.objects.get(pk=job.pk)


def written(job: GenerationJob) -> tuple:
    """What a transition wrote, with its times reduced to set / unset."""
    stored = GenerationJob.objects.get(pk=job.pk)
    assert job.updated_at == stored.updated_at  # the answer is the job as now stored
    times = ("cancel_requested_at", "started_at", "finished_at", "lease_expires_at")
    return (
        stored.status,
        stored.attempt,
        stored.last_event_seq,
        stored.upstream_job_id,
        stored.progress,
        stored.result,
        stored.error_type,
        stored.error_message,
        stored.lease_owner,
        *(getattr(stored, name) is not None for name in times),
    )


@pytest.mark.parametrize("name", list(EVENTS))
def test_each_transition_logs_the_same_data_on_every_path(user, name):
    start, transition, event_type, data = EVENTS[name]
    rows = []
    for copy in ("current", "an attempt behind"):
        job = second_attempt_at(user, start)
        if start != Status.QUEUED:
            GenerationJob.objects.filter(pk=job.pk).update(progress={"percent": 5, "phase": "p"})
            job.refresh_from_db()
        if copy != "current":
            job.attempt -= 1
        with CaptureQueriesContext(connection) as queries:
            change = transition(job)
        expect_path(queries, one_statement=copy == "current")
        assert (change.event.type, change.event.data, change.previous) == (event_type, data, start)
        stored = JobEvent.objects.get(pk=change.event.pk)
        assert (stored.job_id, stored.seq, stored.type, stored.data) == (
            job.pk,
            change.event.seq,
            event_type,
            data,
        )
        assert change.event.as_message() == {"seq": stored.seq, "type": event_type, "data": data}
        rows.append(written(change.job))
    assert rows[0] == rows[1]


def test_a_requeue_clears_the_last_attempt(user):
    job = job_at(user, Status.RUNNING)
    GenerationJob.objects.filter(pk=job.pk).update(progress={"percent": 50, "phase": "p"})
    job = transitions.job_fail(job=job, error_type="job_failed", error_message="boom").job
    job = transitions.job_requeue(job=job, by="alice").job
    job.refresh_from_db()
    assert (job.status, job.attempt, job.upstream_job_id, job.progress, job.result) == (
        Status.QUEUED,
        2,
        "",
        {},
        None,
    )
    assert (job.error_type, job.error_message) == ("", "")
    assert job.cancel_requested_at is job.started_at is job.finished_at is None
