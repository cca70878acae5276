"""``manage.py retry_jobs``: start a new attempt of failed, timed-out or cancelled jobs."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import transaction

from copilot.jobs import services
from copilot.jobs.exceptions import CopilotError
from copilot.jobs.models import GenerationJob
from copilot.jobs.selectors import jobs_get_all, jobs_matching
from copilot.ops.management import args
from copilot.ops.management.base import OperatorCommand, Progress

DEFAULT_STATUSES = "failed,timed_out"


class Command(OperatorCommand):
    help = (
        "Retry jobs: each starts a new attempt (a new upstream job), keeping its history. "
        "Name jobs by id, or select them with --status, --since and --kind. Named jobs are "
        "checked first: if any is unknown or not retryable, nothing is changed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("job_ids", nargs="*", type=args.job_id, metavar="ID", help="Job ids.")
        parser.add_argument(
            "--status",
            type=args.statuses,
            default=args.statuses(DEFAULT_STATUSES),
            help=f"Retry jobs in these states (default: {DEFAULT_STATUSES!r}).",
        )
        parser.add_argument(
            "--since", type=args.duration, help="Only jobs created within this long, e.g. 24h."
        )
        parser.add_argument("--kind", type=args.kinds, help="Only jobs of these kinds.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be retried; change nothing."
        )
        parser.add_argument("--by", default="operator", help="Who retries (default: %(default)r)")

    def handle(self, *, job_ids, status, since, kind, dry_run: bool, by: str, **options) -> None:
        retryable = set(GenerationJob.RETRYABLE_STATUSES)
        if not set(status) <= retryable:
            bad = ", ".join(sorted(set(status) - retryable))
            raise CommandError(
                f"jobs that are {bad} cannot be retried; use failed, timed_out, cancelled"
            )
        if job_ids:
            try:
                jobs = jobs_get_all(job_ids=list(dict.fromkeys(job_ids)))
            except CopilotError as exc:
                raise CommandError(str(exc)) from None
            for job in jobs:
                if not job.is_retryable:
                    raise CommandError(
                        f"job {job.id} is {job.status}; only failed, timed-out or cancelled "
                        "jobs can be retried; nothing changed"
                    )
        else:
            jobs = jobs_matching(statuses=status, kinds=kind, created_within=since)
        if not jobs:
            self.stdout.write("no jobs to retry")
            return
        if dry_run:
            for job in jobs:
                self.stdout.write(f"would retry {job.id} ({job.status}, attempt {job.attempt})")
            return
        progress = Progress(stream=self.stderr, total=len(jobs), verb="retried")
        try:
            with transaction.atomic():
                for job in jobs:
                    job = services.job_retry(job_id=job.id, by=by)
                    self.stdout.write(f"retried {job.id} (attempt {job.attempt})")
                    progress.advance()
        except CopilotError as exc:
            raise CommandError(f"{exc}; nothing changed") from None
        self.stdout.write(f"{len(jobs)} job(s) queued again")
