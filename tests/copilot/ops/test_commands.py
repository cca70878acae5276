"""The operators' commands: exact output, one-line errors, nothing changed on bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from copilot.jobs import services, transitions
from copilot.jobs.models import GenerationJob, JobEvent, RunnerHeartbeat
from tests.support.live import free_port, run_server
from tests.support.portal import ROOT, manage_py_refusal, portal_env

Status = GenerationJob.Status
GOAL = "Every morning at 8am, fetch the top tech news and email a summary to me@example.com"


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


#: How make_job reaches each status: the named transition, with the least it needs.
STEPS = {
    Status.SUBMITTING: lambda job: transitions.job_mark_submitting(job=job),
    Status.RUNNING: lambda job: transitions.job_mark_running(job=job, upstream_job_id="up-1"),
    Status.COMPLETED: lambda job: transitions.job_complete(job=job, result={"type": "x"}),
    Status.FAILED: lambda job: transitions.job_fail(job=job, error_type="x", error_message="y"),
    Status.TIMED_OUT: lambda job: transitions.job_time_out(job=job, error_message="late"),
    Status.CANCELLED: lambda job: transitions.job_cancel_confirmed(job=job, error_message="stop"),
}


def make_job(user, *, status: str = Status.QUEUED, **fields) -> GenerationJob:
    job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
    path = {
        Status.QUEUED: [],
        Status.RUNNING: [Status.SUBMITTING, Status.RUNNING],
        Status.FAILED: [Status.SUBMITTING, Status.FAILED],
        Status.TIMED_OUT: [Status.SUBMITTING, Status.TIMED_OUT],
        Status.COMPLETED: [Status.SUBMITTING, Status.RUNNING, Status.COMPLETED],
        Status.CANCELLED: [Status.CANCELLED],
    }[status]
    for step in path:
        job = STEPS[step](job).job
    if fields:
        GenerationJob.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    return job


def snapshot() -> tuple:
    return (
        tuple(GenerationJob.objects.order_by("pk").values_list("pk", "status", "attempt")),
        JobEvent.objects.count(),
    )


@pytest.fixture(scope="module")
def live_reference():
    port = free_port()
    args = ["-m", "agent_generator.reference", "--port", str(port), "--job-seconds", "0.5"]
    with run_server(args=args, port=port) as live:
        yield live.url


@pytest.fixture(scope="module")
def failing_reference():
    port = free_port()
    args = ["-m", "agent_generator.reference", "--port", str(port), "--job-seconds", "0.3"]
    with run_server(args=[*args, "--faults", "fail=llm_timeout"], port=port) as live:
        yield live.url


# -- submit_job ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_submit_job_creates_a_queued_job(user):
    out, _ = run("submit_job", "--description", GOAL, "--user", "alice")
    job = GenerationJob.objects.get()
    assert out == f"job {job.id} queued (decompose, owner alice)\n"
    assert (job.owner, job.kind, job.request) == (user, "decompose", {"description": GOAL})


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_submit_job_wait_follows_the_job_in_this_process(user, settings, live_reference):
    settings.AGENT_GENERATOR_URL = live_reference
    out, err = run("submit_job", "--description", GOAL, "--user", "alice", "--wait", "--json")
    job = GenerationJob.objects.get()
    assert json.loads(out) == {
        "id": str(job.id),
        "kind": "decompose",
        "status": "completed",
        "attempt": 1,
        "upstream_job_id": job.upstream_job_id,
        "progress": job.progress,
        "error_type": None,
        "error_message": None,
        "result": job.result,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat(),
        "finished_at": job.finished_at.isoformat(),
        "last_event_seq": job.last_event_seq,
        "notify_email": False,
    }
    lines = err.splitlines()
    assert lines[:4] == [
        f"job {job.id} queued (decompose, owner alice)",
        "#1 status queued",
        "#2 status submitting",
        "#3 status running",
    ]
    assert lines[-1].startswith(f"#{job.last_event_seq} result completed: ")
    assert len(lines) == job.last_event_seq + 1  # every event printed once
    assert not job.lease_owner  # the command's runner let go


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_submit_job_wait_exits_1_when_the_job_fails(user, settings, failing_reference):
    settings.AGENT_GENERATOR_URL = failing_reference
    with pytest.raises(CommandError, match=r"ended failed: .*") as info:
        run("submit_job", "--description", GOAL, "--user", "alice", "--wait")
    assert info.value.returncode == 1
    assert GenerationJob.objects.get().error_type == "job_failed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "summon", "--description", "x"], "unknown kind 'summon'"),
        (["--user", "alice"], "the following arguments are required: --description"),
        (["--description", "x" * 10_001], "invalid job: description: Must be at most 10,000"),
        (["--description", "   "], "invalid job: description: This field is required."),
        (["--description", GOAL, "--user", "nobody"], "no user 'nobody'"),
        (
            ["--kind", "update", "--description", "add a step"],
            "invalid job: current_agent_json: This field is required.",
        ),
    ],
)
def test_submit_job_refuses_bad_input_and_changes_nothing(user, args, message):
    if "--user" not in args:
        args = [*args, "--user", "alice"]
    before = snapshot()
    with pytest.raises(CommandError, match=re.escape(message)):
        run("submit_job", *args)
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "invalid job: current_agent_json: Must be a JSON object."),
        ("{not json", "is not JSON"),
    ],
)
def test_submit_job_refuses_agent_json_that_is_not_an_object(user, tmp_path, content, message):
    path = tmp_path / "agent.json"
    path.write_text(content)
    before = snapshot()
    with pytest.raises(CommandError) as info:
        run("submit_job", "--kind", "update", "--description", "add a Slack step",
            "--agent-json", str(path), "--user", "alice")  # fmt: skip
    assert message in str(info.value)
    assert snapshot() == before


@pytest.mark.slow
def test_bad_arguments_get_one_line_and_exit_status_1_from_the_shell():
    result = manage_py_refusal("submit_job", "--kind", "summon", "--description", "x")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "CommandError: argument --kind: unknown kind 'summon'; use one or more of "
        "decompose,generate,update,customize"
    ]


# -- cancel_jobs, retry_jobs, prune_jobs, resume_jobs ----------------------------------------


@pytest.mark.django_db
def test_cancel_jobs(user):
    queued = make_job(user)
    active = make_job(user, status=Status.RUNNING)
    out, _ = run("cancel_jobs", str(queued.id), str(active.id), "--dry-run")
    assert out == f"would cancel {queued.id} (queued)\nwould cancel {active.id} (running)\n"
    assert GenerationJob.objects.get(pk=queued.pk).status == Status.QUEUED
    out, _ = run("cancel_jobs", str(queued.id), str(active.id))
    assert out == f"cancelled {queued.id}\ncancel requested {active.id}\n"
    assert GenerationJob.objects.get(pk=queued.pk).status == Status.CANCELLED
    assert GenerationJob.objects.get(pk=active.pk).cancel_requested_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("command", "bad", "message"),
    [
        ("cancel_jobs", "00000000-0000-0000-0000-000000000000", "no job 00000000-0000"),
        ("cancel_jobs", "not-a-uuid", "'not-a-uuid' is not a job id"),
        ("cancel_jobs", "ENDED", "has already ended (completed); nothing changed"),
        ("retry_jobs", "00000000-0000-0000-0000-000000000000", "no job 00000000-0000"),
        ("retry_jobs", "RUNNING", "is running; only failed, timed-out or cancelled"),
    ],
)
def test_commands_refuse_bad_ids_and_change_nothing(user, command, bad, message):
    good = make_job(user, status=Status.FAILED) if command == "retry_jobs" else make_job(user)
    named = {
        "ENDED": lambda: str(make_job(user, status=Status.COMPLETED).id),
        "RUNNING": lambda: str(make_job(user, status=Status.RUNNING).id),
    }
    bad = named[bad]() if bad in named else bad
    before = snapshot()
    with pytest.raises(CommandError, match=re.escape(message)):
        run(command, str(good.id), bad)
    assert snapshot() == before  # not even the good id was touched


@pytest.mark.django_db
def test_retry_jobs_selects_by_status_age_and_kind(user):
    failed = make_job(user, status=Status.FAILED)
    timed_out = make_job(user, status=Status.TIMED_OUT)
    make_job(user, status=Status.CANCELLED)
    old = make_job(user, status=Status.FAILED, created_at=timezone.now() - timedelta(days=3))
    out, _ = run("retry_jobs", "--since", "24h", "--dry-run")
    assert out == (
        f"would retry {failed.id} (failed, attempt 1)\n"
        f"would retry {timed_out.id} (timed_out, attempt 1)\n"
    )
    out, _ = run("retry_jobs", "--since", "24h", "--kind", "generate")
    assert out == "no jobs to retry\n"
    out, _ = run("retry_jobs", "--since", "24h")
    assert out == (
        f"retried {failed.id} (attempt 2)\nretried {timed_out.id} (attempt 2)\n"
        "2 job(s) queued again\n"
    )
    assert GenerationJob.objects.get(pk=old.pk).attempt == 1
    with pytest.raises(CommandError, match="not a duration"):
        run("retry_jobs", "--since", "yesterday")
    with pytest.raises(CommandError, match="cannot be retried"):
        run("retry_jobs", "--status", "running")


@pytest.mark.django_db
def test_retry_jobs_shows_progress_over_many_jobs(user, settings):
    settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER = 100
    jobs = [make_job(user, status=Status.FAILED) for _ in range(20)]
    out, err = run("retry_jobs")
    assert out.splitlines()[-1] == "20 job(s) queued again"
    assert err.splitlines() == [f"retried {n} of 20" for n in range(2, 21, 2)]
    assert {j.attempt for j in GenerationJob.objects.filter(pk__in=[j.pk for j in jobs])} == {2}


@pytest.mark.django_db
def test_prune_jobs_deletes_old_finished_jobs_with_their_events(user):
    long_ago = timezone.now() - timedelta(days=40)
    old = make_job(user, status=Status.COMPLETED, created_at=long_ago, finished_at=long_ago)
    recent = make_job(user, status=Status.FAILED)
    active = make_job(user, status=Status.RUNNING, created_at=long_ago)
    events = JobEvent.objects.filter(job=old).count()
    out, _ = run("prune_jobs", "--older-than", "30d", "--dry-run")
    assert out == f"would delete 1 job(s) and {events} event(s)\n"
    out, _ = run("prune_jobs", "--older-than", "30d")
    assert out == f"deleted 1 job(s) and {events} event(s)\n"
    assert set(GenerationJob.objects.values_list("pk", flat=True)) == {recent.pk, active.pk}
    with pytest.raises(CommandError, match="never pruned"):
        run("prune_jobs", "--older-than", "1d", "--status", "running")


@pytest.mark.django_db
def test_resume_jobs_dry_run_lists_stale_jobs(user):
    queued = make_job(user)
    stale = make_job(
        user,
        status=Status.RUNNING,
        lease_owner="dead-runner",
        lease_expires_at=timezone.now() - timedelta(seconds=5),
    )
    make_job(
        user,
        status=Status.RUNNING,
        lease_owner="live-runner",
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )
    RunnerHeartbeat.objects.create(owner="live-runner")  # alive: its job is not stale
    out, _ = run("resume_jobs", "--dry-run")
    assert out == (
        f"stale {queued.id} (queued, upstream not submitted yet)\n"
        f"stale {stale.id} (running, upstream up-1)\n"
        "2 stale job(s)\n"
    )


@pytest.mark.slow
def test_every_command_has_help_a_newcomer_understands():
    for command in ("submit_job", "retry_jobs", "cancel_jobs", "resume_jobs", "prune_jobs"):
        result = subprocess.run(
            [sys.executable, "manage.py", command, "--help"],
            cwd=ROOT,
            env=portal_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "--dry-run" in result.stdout or command == "submit_job"
