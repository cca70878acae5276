"""Jobs and their event logs are stored, and only legal state changes happen."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from copilot.jobs import events, services, transitions
from copilot.jobs.exceptions import IllegalTransition, InvalidJobRequest, JobLimitReached, LeaseLost
from copilot.jobs.models import GenerationJob, JobEvent

Status = GenerationJob.Status
pytestmark = pytest.mark.django_db


def submit(user, description="Every morning, fetch the news and email me a summary"):
    return services.job_submit(user=user, kind="decompose", payload={"description": description})


#: Each status, reached by its named transition with the least it needs.
MOVES = {
    Status.SUBMITTING: lambda job: transitions.job_mark_submitting(job=job),
    Status.RUNNING: lambda job: transitions.job_mark_running(job=job, upstream_job_id="up-1"),
    Status.COMPLETED: lambda job: transitions.job_complete(job=job, result={"type": "x"}),
    Status.FAILED: lambda job: transitions.job_fail(job=job, error_type="x", error_message="y"),
    Status.TIMED_OUT: lambda job: transitions.job_time_out(job=job, error_message="late"),
    Status.CANCELLED: lambda job: transitions.job_cancel_confirmed(job=job, error_message="stop"),
    Status.QUEUED: lambda job: transitions.job_requeue(job=job, by="alice"),
}


def move(job: GenerationJob, to: str) -> GenerationJob:
    return MOVES[to](job).job


@pytest.mark.alldb
def test_migrations_are_complete_and_apply():
    # The test database was migrated; a model change without its migration fails here.
    call_command("makemigrations", "copilot", "--check", "--dry-run", verbosity=0)


@pytest.mark.alldb
def test_a_job_and_its_events_are_stored(user):
    job = submit(user)
    job.refresh_from_db()
    assert job.status == Status.QUEUED
    assert job.request == {"description": "Every morning, fetch the news and email me a summary"}
    assert job.attempt == 1
    job = transitions.job_mark_submitting(job=job).job
    job = transitions.job_mark_running(job=job, upstream_job_id="up-1").job
    events.job_progress(job_id=job.id, percent=40, phase="matching blocks")
    transitions.job_complete(job=job, result={"type": "vague_goal", "suggested_goal": "x"})
    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    assert job.is_terminal and job.finished_at and job.started_at
    assert job.elapsed is not None and job.elapsed.total_seconds() >= 0
    logged = list(job.events.values_list("seq", "type"))
    assert logged == [(1, "status"), (2, "status"), (3, "status"), (4, "progress"), (5, "result")]
    assert job.last_event_seq == 5
    assert job.events.get(seq=5).data["terminal"] is True
    assert GenerationJob.objects.finished().filter(pk=job.pk).exists()
    assert not GenerationJob.objects.active().filter(pk=job.pk).exists()


@pytest.mark.alldb
@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], Status.RUNNING),
        ([], Status.COMPLETED),
        ([Status.SUBMITTING, Status.RUNNING, Status.COMPLETED], Status.RUNNING),
        ([Status.SUBMITTING, Status.RUNNING, Status.COMPLETED], Status.QUEUED),
        ([Status.SUBMITTING, Status.FAILED], Status.RUNNING),
        ([Status.CANCELLED], Status.SUBMITTING),
        ([Status.SUBMITTING, Status.TIMED_OUT], Status.COMPLETED),
    ],
)
def test_illegal_transitions_are_refused_and_change_nothing(user, path, illegal):
    job = submit(user)
    for status in path:
        job = move(job, status)
    job.refresh_from_db()
    before = (job.status, job.last_event_seq, job.updated_at)
    with pytest.raises(IllegalTransition):
        move(job, illegal)
    job.refresh_from_db()
    assert (job.status, job.last_event_seq, job.updated_at) == before
    assert job.events.count() == job.last_event_seq


@pytest.mark.alldb
def test_progress_on_a_finished_job_is_refused(user):
    job = submit(user)
    move(job, Status.CANCELLED)
    with pytest.raises(IllegalTransition):
        events.job_progress(job_id=job.id, percent=10, phase="late")


@pytest.mark.alldb
def test_a_write_without_the_lease_is_refused(user):
    job = submit(user)
    with pytest.raises(LeaseLost):
        transitions.job_mark_submitting(job=job, lease_owner="runner-x")
    job.refresh_from_db()
    assert job.status == Status.QUEUED


def test_querysets_name_states(user):
    from django.conf import settings
    from django.utils import timezone

    from copilot.jobs.models import RunnerHeartbeat

    queued = submit(user, "Fetch the weather every day and post it to Slack")
    running = submit(user, "Read my spreadsheet and email a summary to me@example.com")
    move(running, Status.SUBMITTING)
    GenerationJob.objects.filter(pk=running.pk).update(lease_owner="r1")
    assert set(GenerationJob.objects.stale()) == {queued, running}  # r1: no heartbeat
    RunnerHeartbeat.objects.create(owner="r1", seen_at=timezone.now())
    assert set(GenerationJob.objects.active()) == {queued, running}
    assert set(GenerationJob.objects.stale()) == {queued}
    later = timezone.now() + timezone.timedelta(seconds=settings.COPILOT_RUNNER_DEAD_SECONDS + 1)
    assert set(GenerationJob.objects.stale(now=later)) == {queued, running}  # r1 is dead


@pytest.mark.parametrize(
    ("kind", "payload", "field"),
    [
        ("summon", {"description": "x"}, "kind"),
        ("decompose", {}, "description"),
        ("decompose", {"description": "   "}, "description"),
        ("decompose", {"description": "x" * 10_001}, "description"),
        ("decompose", {"description": 42}, "description"),
        (
            "update",
            {"update_request": "add a step", "current_agent_json": [1, 2]},
            "current_agent_json",
        ),
        (
            "customize",
            {"modification_request": "x", "template_agent_json": "{}"},
            "template_agent_json",
        ),
        ("update", {"current_agent_json": {"nodes": [], "links": []}}, "update_request"),
    ],
)
def test_bad_requests_get_field_errors_and_store_nothing(user, kind, payload, field):
    with pytest.raises(InvalidJobRequest) as info:
        services.job_submit(user=user, kind=kind, payload=payload)
    assert field in info.value.errors
    assert GenerationJob.objects.count() == 0
    assert JobEvent.objects.count() == 0


def test_active_jobs_per_user_are_capped(user, other_user, settings):
    settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER = 2
    submit(user)
    submit(user)
    with pytest.raises(JobLimitReached):
        submit(user)
    submit(other_user)  # the cap is per user
    assert GenerationJob.objects.filter(owner=user).count() == 2


def test_retry_starts_a_new_attempt_and_keeps_the_history(user):
    job = submit(user)
    job = transitions.job_mark_submitting(job=job).job
    job = transitions.job_mark_running(job=job, upstream_job_id="up-1").job
    transitions.job_fail(job=job, error_type="job_failed", error_message="boom")
    job = services.job_retry(job_id=job.id, by=user)
    assert (job.status, job.attempt, job.upstream_job_id, job.error_type) == (
        Status.QUEUED,
        2,
        "",
        "",
    )
    assert list(job.events.values_list("type", flat=True)) == [
        "status",
        "status",
        "status",
        "error",
        "retry",
    ]
    assert job.events.last().data["attempt"] == 2


def test_retry_of_an_active_or_completed_job_is_refused(user):
    job = submit(user)
    with pytest.raises(IllegalTransition):
        services.job_retry(job_id=job.id, by=user)
    assert GenerationJob.objects.get(pk=job.pk).attempt == 1


def test_cancel_of_a_queued_job_ends_it_at_once(user):
    job = services.job_cancel(job_id=submit(user).id, by=user)
    assert job.status == Status.CANCELLED
    assert job.error_type == "cancelled"
    with pytest.raises(IllegalTransition):
        services.job_cancel(job_id=job.id, by=user)


def test_cancel_of_a_running_job_asks_its_runner(user):
    job = submit(user)
    job = transitions.job_mark_submitting(job=job).job
    transitions.job_mark_running(job=job, upstream_job_id="up-1")
    job = services.job_cancel(job_id=job.id, by=user)
    assert job.status == Status.RUNNING and job.cancel_requested_at is not None
    assert job.events.last().type == "cancel_requested"
