"""Appending events: the same answers on every database, one statement on PostgreSQL.

On PostgreSQL ``event_append`` and ``job_progress`` write in one statement
(:mod:`copilot.jobs.fastpath`); where that statement writes nothing they fall back to the ORM path,
which raises the precise error. These tests run in both passes (``alldb``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from copilot.jobs import services
from copilot.jobs.exceptions import IllegalTransition, JobNotFound, LeaseLost
from copilot.jobs.models import GenerationJob, JobEvent

Status = GenerationJob.Status
pytestmark = [pytest.mark.alldb, pytest.mark.django_db]


def running_job(user, *, owner: str = "runner-a") -> GenerationJob:
    job = services.job_submit(
        user=user, kind="decompose", payload={"description": "Email me the weather every day"}
    )
    services.job_transition(job_id=job.id, to=Status.SUBMITTING)
    services.job_transition(job_id=job.id, to=Status.RUNNING, upstream_job_id="up-1")
    GenerationJob.objects.filter(pk=job.pk).update(
        lease_owner=owner, lease_expires_at=timezone.now() + timedelta(seconds=60)
    )
    job.refresh_from_db()
    return job


def test_progress_is_stored_on_the_row_and_in_the_log(user):
    job = running_job(user)
    before = job.updated_at
    event = services.job_progress(
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
    submitting, event = services.job_transition(job_id=job.id, to=Status.SUBMITTING)
    assert submitting.started_at is not None
    assert event.data == {
        "status": "submitting",
        "previous": "queued",
        "attempt": 1,
        "terminal": False,
    }
    services.job_transition(job_id=job.id, to=Status.FAILED, error_type="x", error_message="y")
    job.refresh_from_db()
    assert (job.status, job.finished_at is not None, job.error_type) == ("failed", True, "x")


def test_an_event_is_numbered_after_the_last_one(user):
    job = running_job(user)
    first = services.event_append(
        job_id=job.id, type="status", data={"upstream_status": "pending"}, lease_owner="runner-a"
    )
    second = services.event_append(job_id=job.id, type="status", data={"upstream_status": "x"})
    assert (first.seq, second.seq) == (4, 5)
    assert list(job.events.values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
    job.refresh_from_db()
    assert job.last_event_seq == 5


def test_a_runner_whose_lease_was_taken_writes_nothing(user):
    job = running_job(user, owner="runner-b")
    with pytest.raises(LeaseLost):
        services.job_transition(job_id=job.id, to=Status.COMPLETED, lease_owner="runner-a")
    with pytest.raises(LeaseLost):
        services.job_progress(job_id=job.id, percent=10, phase="x", lease_owner="runner-a")
    with pytest.raises(LeaseLost):
        services.event_append(job_id=job.id, type="status", data={}, lease_owner="runner-a")
    job.refresh_from_db()
    assert (job.last_event_seq, job.progress) == (3, {})
    assert job.events.count() == 3


def test_an_expired_lease_writes_nothing(user):
    job = running_job(user)
    GenerationJob.objects.filter(pk=job.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(LeaseLost):
        services.job_progress(job_id=job.id, percent=10, phase="x", lease_owner="runner-a")
    assert job.events.count() == 3


@pytest.mark.parametrize("to", [Status.QUEUED, Status.SUBMITTING, "bogus"])
def test_a_change_the_state_machine_forbids_writes_nothing(user, to):
    job = running_job(user)
    with pytest.raises(IllegalTransition):
        services.job_transition(job_id=job.id, to=to)
    job.refresh_from_db()
    assert (job.status, job.last_event_seq) == (Status.RUNNING, 3)


def test_progress_on_an_ended_job_is_refused(user):
    job = running_job(user)
    services.job_transition(job_id=job.id, to=Status.CANCELLED)
    with pytest.raises(IllegalTransition):
        services.job_progress(job_id=job.id, percent=10, phase="late")
    job.refresh_from_db()
    assert job.last_event_seq == job.events.count() == 4


@pytest.mark.parametrize("job_id", [uuid.uuid4(), "not-a-uuid"])
def test_an_unknown_job_is_not_found(user, job_id):
    with pytest.raises(JobNotFound):
        services.job_transition(job_id=job_id, to=Status.CANCELLED)
    with pytest.raises(JobNotFound):
        services.job_progress(job_id=job_id, percent=1, phase="x")
    with pytest.raises(JobNotFound):
        services.event_append(job_id=job_id, type="status", data={})
    assert JobEvent.objects.count() == 0


@pytest.mark.postgres
def test_on_postgresql_a_status_change_is_one_statement(user):
    job = running_job(user)
    with CaptureQueriesContext(connection) as queries:
        job_after, event = services.job_transition(
            job_id=job.id,
            to=Status.COMPLETED,
            lease_owner="runner-a",
            result={"type": "vague_goal", "suggested_goal": "x"},
        )
    assert len(queries) == 1, [q["sql"] for q in queries]
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
        services.job_progress(job_id=job.id, percent=50, phase="wiring", lease_owner="runner-a")
        services.event_append(job_id=job.id, type="status", data={}, lease_owner="runner-a")
    assert len(queries) == 2, [q["sql"] for q in queries]
    assert all(q["sql"].startswith("WITH job AS (UPDATE") for q in queries)
