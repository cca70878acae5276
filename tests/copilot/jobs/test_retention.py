"""Pruning in batches: whole batches, events with their jobs, never an active job."""

from __future__ import annotations

import functools
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.utils import timezone

from copilot.jobs import retention
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.retention import PruneResult, jobs_prune, prune_count
from tests.support import job_history

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.alldb]

Status = GenerationJob.Status
TERMINAL = list(GenerationJob.TERMINAL_STATUSES)
EVENTS_PER_JOB = 3

#: ``fill(user, count=..., status=..., days_ago=...)``: jobs with EVENTS_PER_JOB events each.
fill = functools.partial(job_history.fill, events_per_job=EVENTS_PER_JOB)


def events_per_job() -> set[int]:
    counts = GenerationJob.objects.annotate(n=Count("events")).values_list("n", flat=True)
    return set(counts)


def test_prunes_old_finished_jobs_and_their_events_in_batches(user):
    old = fill(user, count=23, status=Status.COMPLETED, days_ago=40)
    old_active = fill(user, count=4, status=Status.RUNNING, days_ago=40)
    recent = fill(user, count=5, status=Status.FAILED, days_ago=1)
    cutoff = timezone.now() - timedelta(days=30)
    assert prune_count(finished_before=cutoff, statuses=TERMINAL) == PruneResult(
        jobs=23, events=23 * EVENTS_PER_JOB
    )
    batches: list[tuple[int, int]] = []
    done = jobs_prune(
        finished_before=cutoff,
        statuses=TERMINAL,
        batch_size=5,
        on_batch=lambda total: batches.append((total.jobs, total.events)),
    )
    assert done == PruneResult(jobs=23, events=23 * EVENTS_PER_JOB)
    assert batches == [(n, n * EVENTS_PER_JOB) for n in (5, 10, 15, 20, 23)]
    left = set(GenerationJob.objects.values_list("pk", flat=True))
    assert left == {j.pk for j in old_active + recent}
    assert not JobEvent.objects.filter(job_id__in=[j.pk for j in old]).exists()
    assert events_per_job() == {EVENTS_PER_JOB}  # the others keep every event


def test_a_batch_larger_than_an_in_list_goes_whole(user):
    """A batch of more ids than one ``IN`` list takes (SQLite's parameter limit) is deleted
    in slices, still one transaction; PostgreSQL's one statement takes any size."""
    count = retention.IN_LIST_MAX * 2 + 7
    fill(user, count=count, status=Status.COMPLETED, days_ago=40)
    kept = fill(user, count=2, status=Status.RUNNING, days_ago=40)
    cutoff = timezone.now() - timedelta(days=30)
    batches: list[int] = []
    done = jobs_prune(
        finished_before=cutoff,
        statuses=TERMINAL,
        batch_size=50_000,
        on_batch=lambda total: batches.append(total.jobs),
    )
    assert done == PruneResult(jobs=count, events=count * EVENTS_PER_JOB)
    assert batches == [count]  # one batch
    assert set(GenerationJob.objects.values_list("pk", flat=True)) == {j.pk for j in kept}
    assert JobEvent.objects.count() == len(kept) * EVENTS_PER_JOB


def test_only_the_statuses_asked_for_and_never_active_ones(user):
    fill(user, count=3, status=Status.COMPLETED, days_ago=40)
    failed = fill(user, count=2, status=Status.FAILED, days_ago=40)
    queued = fill(user, count=2, status=Status.QUEUED, days_ago=40)
    cutoff = timezone.now() - timedelta(days=30)
    done = jobs_prune(
        finished_before=cutoff, statuses=[Status.COMPLETED, Status.QUEUED], batch_size=2
    )
    assert done.jobs == 3
    assert set(GenerationJob.objects.values_list("pk", flat=True)) == {
        j.pk for j in failed + queued
    }


def test_no_terminal_status_asked_for_prunes_nothing(user):
    fill(user, count=2, status=Status.QUEUED, days_ago=40)
    cutoff = timezone.now() - timedelta(days=30)
    assert jobs_prune(finished_before=cutoff, statuses=[Status.QUEUED]) == PruneResult()
    assert jobs_prune(finished_before=cutoff, statuses=[]) == PruneResult()
    assert GenerationJob.objects.count() == 2


def test_an_interrupted_prune_leaves_whole_batches(user):
    fill(user, count=12, status=Status.CANCELLED, days_ago=40)

    def stop_after_two(total: PruneResult) -> None:
        if total.jobs == 8:
            raise KeyboardInterrupt

    done = jobs_prune(
        finished_before=timezone.now() - timedelta(days=30),
        statuses=TERMINAL,
        batch_size=4,
        on_batch=stop_after_two,
    )
    assert done == PruneResult(jobs=8, events=8 * EVENTS_PER_JOB, interrupted=True)
    assert GenerationJob.objects.count() == 4
    assert events_per_job() == {EVENTS_PER_JOB}  # no job lost some of its events only


def test_the_command_shows_progress_and_counts_on_a_dry_run(user):
    fill(user, count=30, status=Status.TIMED_OUT, days_ago=100)
    fill(user, count=2, status=Status.RUNNING, days_ago=100)
    out, err = StringIO(), StringIO()
    call_command("prune_jobs", "--older-than", "90d", "--dry-run", stdout=out, stderr=err)
    assert out.getvalue() == f"would delete 30 job(s) and {30 * EVENTS_PER_JOB} event(s)\n"
    assert GenerationJob.objects.count() == 32
    out, err = StringIO(), StringIO()
    call_command("prune_jobs", "--older-than", "90d", "--batch-size", "10", stdout=out, stderr=err)
    assert out.getvalue() == f"deleted 30 job(s) and {30 * EVENTS_PER_JOB} event(s)\n"
    assert err.getvalue() == "pruned 10 of 30 jobs\npruned 20 of 30 jobs\npruned 30 of 30 jobs\n"
    assert GenerationJob.objects.count() == 2


@pytest.mark.parametrize("size", ["0", "-1", "1e3", "50001", "²", "", "9" * 30])
def test_a_bad_batch_size_is_one_line(size):
    with pytest.raises(CommandError, match="batch size"):
        call_command("prune_jobs", "--older-than", "30d", "--batch-size", size)
