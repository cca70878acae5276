"""Appending events: the same answers on every database, one statement on PostgreSQL.

On PostgreSQL ``event_append``, ``job_progress`` and the named transitions write in one
statement (:mod:`copilot.jobs.fastpath`); where that statement writes nothing they fall back to
the ORM path, which raises the precise error. These tests run in both passes (``alldb``).
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from copilot.jobs import events, services, transitions
from copilot.jobs.exceptions import IllegalTransition, JobNotFound, LeaseLost
from copilot.jobs.models import GenerationJob, JobEvent

Status = GenerationJob.Status
pytestmark = [pytest.mark.alldb, pytest.mark.django_db]


def running_job(user, *, owner: str = "runner-a") -> GenerationJob:
    job = services.job_submit(
        user=user, kind="decompose", payload={"description": "Email me the weather every day"}
    )
    job = transitions.job_mark_submitting(job=job).job
    transitions.job_mark_running(job=job, upstream_job_id="up-1")
    GenerationJob.objects.filter(pk=job.pk).update(lease_owner=owner)
    job.refresh_from_db()
    return job


def test_progress_is_stored_on_the_row_and_in_the_log(user):
    job = running_job(user)
    before = job.updated_at
    event = events.job_progress(
        job_id=job.id, percent=40, phase="matching blocks", lease_owner="runner-a"
    )
    job.refresh_from_db()
    assert (event.seq, event.type, event.job_id) == (4, "progress", job.id)
    assert event.data == {"percent": 40, "phase": "matching blocks"}
    assert job.progress == {"percent": 40, "phase": "matching blocks"}
    assert job.last_event_seq == 4
    assert job.updated_at > before
    stored = JobEvent.objects.get(job=job, seq=4)
    assert (stored.pk, stored.type, stored.data) == (event.pk, "progress", event.data)
    assert abs((stored.created_at - event.created_at).total_seconds()) < 0.001
    assert event.as_message() == {"seq": 4, "type": "progress", "data": event.data}


def test_a_first_submit_starts_the_clock_and_a_resumed_one_keeps_it(user):
    job = services.job_submit(
        user=user, kind="decompose", payload={"description": "Email me the weather every day"}
    )
    change = transitions.job_mark_submitting(job=job)
    submitting, event = change.job, change.event
    assert submitting.started_at is not None and change.previous == "queued"
    assert event.data == {
        "status": "submitting",
        "previous": "queued",
        "attempt": 1,
        "terminal": False,
    }
    transitions.job_fail(job=submitting, error_type="x", error_message="y")
    job.refresh_from_db()
    assert (job.status, job.finished_at is not None, job.error_type) == ("failed", True, "x")


def test_an_event_is_numbered_after_the_last_one(user):
    job = running_job(user)
    first = events.event_append(
        job_id=job.id, type="status", data={"upstream_status": "pending"}, lease_owner="runner-a"
    )
    second = events.event_append(job_id=job.id, type="status", data={"upstream_status": "x"})
    assert (first.seq, second.seq) == (4, 5)
    assert list(job.events.values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
    job.refresh_from_db()
    assert job.last_event_seq == 5


def test_a_runner_whose_lease_was_taken_writes_nothing(user):
    job = running_job(user, owner="runner-b")
    with pytest.raises(LeaseLost):
        transitions.job_complete(job=job, result={"type": "x"}, lease_owner="runner-a")
    with pytest.raises(LeaseLost):
        events.job_progress(job_id=job.id, percent=10, phase="x", lease_owner="runner-a")
    with pytest.raises(LeaseLost):
        events.event_append(job_id=job.id, type="status", data={}, lease_owner="runner-a")
    job.refresh_from_db()
    assert (job.last_event_seq, job.progress) == (3, {})
    assert job.events.count() == 3


def test_a_job_taken_over_writes_nothing_from_its_former_runner(user):
    job = running_job(user)
    GenerationJob.objects.filter(pk=job.pk).update(lease_owner="runner-b")  # a takeover
    with pytest.raises(LeaseLost):
        events.job_progress(job_id=job.id, percent=10, phase="x", lease_owner="runner-a")
    with pytest.raises(LeaseLost):
        transitions.job_fail(job=job, error_type="x", error_message="y", lease_owner="runner-a")
    assert job.events.count() == 3


@pytest.mark.parametrize(
    "transition",
    [
        lambda job: transitions.job_requeue(job=job, by="alice"),
        lambda job: transitions.job_mark_submitting(job=job),
        lambda job: transitions.job_mark_running(job=job, upstream_job_id="up-2"),
    ],
    ids=["requeue", "mark_submitting", "mark_running"],
)
def test_a_change_the_state_machine_forbids_writes_nothing(user, transition):
    job = running_job(user)
    with pytest.raises(IllegalTransition):
        transition(job)
    job.refresh_from_db()
    assert (job.status, job.last_event_seq) == (Status.RUNNING, 3)


def test_progress_on_an_ended_job_is_refused(user):
    job = running_job(user)
    transitions.job_cancel_confirmed(job=job, error_message="stop")
    with pytest.raises(IllegalTransition):
        events.job_progress(job_id=job.id, percent=10, phase="late")
    job.refresh_from_db()
    assert job.last_event_seq == job.events.count() == 4


@pytest.mark.parametrize("job_id", [uuid.uuid4(), "not-a-uuid"])
def test_an_unknown_job_is_not_found(user, job_id):
    unknown = GenerationJob(pk=job_id, owner=user, kind="decompose")  # a copy of no stored job
    with pytest.raises(JobNotFound):
        transitions.job_cancel_confirmed(job=unknown, error_message="stop")
    with pytest.raises(JobNotFound):
        events.job_progress(job_id=job_id, percent=1, phase="x")
    with pytest.raises(JobNotFound):
        events.event_append(job_id=job_id, type="status", data={})
    assert JobEvent.objects.count() == 0


@pytest.mark.postgres
def test_on_postgresql_a_status_change_is_one_statement(user):
    job = running_job(user)
    with CaptureQueriesContext(connection) as queries:
        change = transitions.job_complete(
            job=job, lease_owner="runner-a", result={"type": "vague_goal", "suggested_goal": "x"}
        )
    job_after, event = change.job, change.event
    assert len(queries) == 1, [q["sql"] for q in queries]
    # The event's data is built once, in Python, and stored as one value.
    assert "jsonb_build_object" not in queries[0]["sql"]
    assert change.previous == Status.RUNNING
    stored = GenerationJob.objects.get(pk=job.pk)
    for fetched in (job_after, stored):
        assert (fetched.status, fetched.last_event_seq, fetched.lease_owner) == (
            Status.COMPLETED,
            4,
            "",
        )
        assert fetched.result == {"type": "vague_goal", "suggested_goal": "x"}
        assert fetched.finished_at is not None and fetched.lease_expires_at is None
        assert fetched.request == job.request and fetched.started_at == job.started_at
    expected = {
        "status": "completed",
        "previous": "running",
        "attempt": 1,
        "terminal": True,
        "result": {"type": "vague_goal", "suggested_goal": "x"},
    }
    assert (event.seq, event.type, event.data) == (4, "result", expected)
    assert JobEvent.objects.get(pk=event.pk).data == expected


@pytest.mark.postgres
def test_on_postgresql_a_progress_step_is_one_statement(user):
    job = running_job(user)
    with CaptureQueriesContext(connection) as queries:
        events.job_progress(job_id=job.id, percent=50, phase="wiring", lease_owner="runner-a")
        events.event_append(job_id=job.id, type="status", data={}, lease_owner="runner-a")
    assert len(queries) == 2, [q["sql"] for q in queries]
    assert all(q["sql"].startswith("WITH job AS (UPDATE") for q in queries)
