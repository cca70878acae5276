"""``manage.py prune_jobs`` on PostgreSQL beside other transactions: Ctrl-C and locked jobs.

Ctrl-C: the prune is made to stop inside a batch for certain: this test holds a row lock on
one event of the 501st job in pruning's order, so batch 51 (batch size 10) waits on it
inside its single statement. SIGINT then cancels that statement and rolls the batch back:
the first 500 jobs are gone with all their events, the other 500 keep all of theirs.

A job someone else holds (a retry at that moment) is skipped (``SKIP LOCKED``), not waited
for: the prune ends, and that job keeps its events.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from django.db import connection, transaction
from django.db.models import Count

from copilot.jobs.models import GenerationJob, JobEvent
from tests.support import job_history
from tests.support.portal import ROOT, portal_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.slow]

JOBS = 1_000
EVENTS_PER_JOB = 2
BATCH = 10
BLOCKED_AT = 500  # the job (0-based, in pruning's order) whose event the test locks


def fill(user) -> list[GenerationJob]:
    """JOBS completed jobs that finished 40 days ago, in pruning's order (created_at, id)."""
    job_history.fill(
        user,
        count=JOBS,
        status=GenerationJob.Status.COMPLETED,
        days_ago=40,
        events_per_job=EVENTS_PER_JOB,
        ties_every=7,
    )
    return list(GenerationJob.objects.order_by("created_at", "id"))


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # read once a transaction otherwise
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def test_ctrl_c_stops_after_whole_batches_with_one_line(user):
    ordered = fill(user)
    blocked = ordered[BLOCKED_AT]
    command = [sys.executable, "manage.py", "prune_jobs", "--older-than", "30d"]
    with transaction.atomic():
        JobEvent.objects.select_for_update().filter(job=blocked, seq=2).get()
        prune = subprocess.Popen(
            [*command, "--batch-size", str(BATCH)],
            cwd=ROOT,
            env=portal_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not waiting_on_a_lock():
                assert prune.poll() is None, prune.communicate()
                assert time.monotonic() < deadline, "the prune never reached the locked event"
                time.sleep(0.02)
            prune.send_signal(signal.SIGINT)
            out, err = prune.communicate(timeout=30)
        finally:
            if prune.poll() is None:
                prune.kill()
                prune.wait(10)
    assert prune.returncode == 1, (out, err)
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1] == (
        f"CommandError: interrupted: pruned {BLOCKED_AT} job(s) and "
        f"{BLOCKED_AT * EVENTS_PER_JOB:,} event(s) in whole batches; run it again to prune the rest"
    )
    assert lines[:-1] == [f"pruned {n} of {JOBS:,} jobs" for n in range(100, BLOCKED_AT + 1, 100)]
    left = {job.pk for job in ordered[BLOCKED_AT:]}
    assert set(GenerationJob.objects.values_list("pk", flat=True)) == left
    counts = GenerationJob.objects.annotate(n=Count("events")).values_list("n", flat=True)
    assert set(counts) == {EVENTS_PER_JOB}  # the rolled-back batch kept every event
    assert JobEvent.objects.count() == len(left) * EVENTS_PER_JOB


def test_a_job_locked_elsewhere_is_skipped_not_waited_for(user):
    ordered = fill(user)[:30]
    GenerationJob.objects.exclude(pk__in=[job.pk for job in ordered]).delete()
    held = ordered[12]
    with transaction.atomic():
        GenerationJob.objects.select_for_update().get(pk=held.pk)  # e.g. being retried
        prune = subprocess.run(
            [sys.executable, "manage.py", "prune_jobs", "--older-than", "30d", "--batch-size", "5"],
            cwd=ROOT,
            env=portal_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert prune.returncode == 0, prune.stderr
    assert prune.stdout == f"deleted 29 job(s) and {29 * EVENTS_PER_JOB} event(s)\n"
    assert list(GenerationJob.objects.values_list("pk", flat=True)) == [held.pk]
    assert JobEvent.objects.filter(job=held).count() == EVENTS_PER_JOB
