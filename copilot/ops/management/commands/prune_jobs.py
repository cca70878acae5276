"""``manage.py prune_jobs --older-than 30d``: delete finished jobs and their events."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import transaction

from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.selectors import jobs_matching
from copilot.ops.management import args
from copilot.ops.management.base import OperatorCommand

TERMINAL = ",".join(GenerationJob.TERMINAL_STATUSES)


class Command(OperatorCommand):
    help = (
        "Delete jobs that finished more than --older-than ago, with their events. Active jobs "
        "are never deleted."
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
            "--dry-run", action="store_true", help="Say what would be deleted; change nothing."
        )

    def handle(self, *, older_than, status, dry_run: bool, **options) -> None:
        active = set(status) - set(GenerationJob.TERMINAL_STATUSES)
        if active:
            raise CommandError(
                f"active jobs ({', '.join(sorted(active))}) are never pruned; cancel them first"
            )
        jobs = jobs_matching(statuses=status, finished_before=older_than)
        ids = [job.id for job in jobs]
        events = JobEvent.objects.filter(job_id__in=ids).count()
        if dry_run:
            self.stdout.write(f"would delete {len(ids)} job(s) and {events} event(s)")
            return
        with transaction.atomic():
            GenerationJob.objects.filter(pk__in=ids).delete()
        self.stdout.write(f"deleted {len(ids)} job(s) and {events} event(s)")
