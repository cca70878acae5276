"""``manage.py prune_jobs --older-than 30d``: delete finished jobs and their events, in batches.

The work is :mod:`copilot.jobs.retention`'s: a batch of jobs per short transaction. Progress
goes to stderr ("pruned 120,000 of 498,312 jobs", every tenth of the way); Ctrl-C stops after
the last whole batch and says how many were pruned (exit status 1).
"""

from __future__ import annotations

import argparse

from django.core.management.base import CommandError
from django.utils import timezone

from copilot.jobs import retention
from copilot.jobs.models import GenerationJob
from copilot.ops.management import args
from copilot.ops.management.base import OperatorCommand

TERMINAL = ",".join(GenerationJob.TERMINAL_STATUSES)
#: The largest --batch-size taken: a batch must stay a short transaction.
MAX_BATCH_SIZE = 50_000


def batch_size(text: str) -> int:
    """A whole number of jobs per batch, 1 to MAX_BATCH_SIZE."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 6) or not (
        1 <= int(digits) <= MAX_BATCH_SIZE
    ):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a batch size; give a whole number from 1 to {MAX_BATCH_SIZE:,}"
        )
    return int(digits)


class Command(OperatorCommand):
    help = (
        "Delete jobs that finished more than --older-than ago, with their events, a batch at "
        "a time. Active jobs are never deleted."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--older-than",
            type=args.duration,
            required=True,
            help="Jobs that finished longer ago than this, e.g. 30d.",
        )
        parser.add_argument(
            "--status",
            type=args.statuses,
            default=args.statuses(TERMINAL),
            help=f"Only jobs in these states (default: {TERMINAL!r}).",
        )
        parser.add_argument(
            "--batch-size",
            type=batch_size,
            default=retention.DEFAULT_BATCH_SIZE,
            help="Jobs deleted per transaction, with their events (default: %(default)r).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; change nothing."
        )

    def handle(self, *, older_than, status, batch_size: int, dry_run: bool, **options) -> None:
        active = set(status) - set(GenerationJob.TERMINAL_STATUSES)
        if active:
            raise CommandError(
                f"active jobs ({', '.join(sorted(active))}) are never pruned; cancel them first"
            )
        cutoff = timezone.now() - older_than
        planned = retention.prune_count(finished_before=cutoff, statuses=status, events=dry_run)
        if dry_run:
            self.stdout.write(f"would delete {planned.jobs} job(s) and {planned.events} event(s)")
            return
        done = retention.jobs_prune(
            finished_before=cutoff,
            statuses=status,
            batch_size=batch_size,
            on_batch=self._progress(total=planned.jobs, batch_size=batch_size),
        )
        if done.interrupted:
            raise CommandError(
                f"interrupted: pruned {done.jobs:,} job(s) and {done.events:,} event(s) in "
                "whole batches; run it again to prune the rest"
            )
        self.stdout.write(f"deleted {done.jobs} job(s) and {done.events} event(s)")

    def _progress(self, *, total: int, batch_size: int):
        """Lines on stderr every tenth of the way, when there is more than one batch."""
        shown = 0

        def report(done: retention.PruneResult) -> None:
            nonlocal shown
            tenth = done.jobs * 10 // total if total else 10
            if total > batch_size and tenth > shown:
                shown = tenth
                self.stderr.write(f"pruned {done.jobs:,} of {total:,} jobs")

        return report
