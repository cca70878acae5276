"""``manage.py retry_jobs``: start a new attempt of failed, timed-out or cancelled jobs.

A retry counts against its owner's active-jobs limit like a submit: when any job would pass
it, each such job gets a ``refused`` line and nothing changes (exit status 1).
"""

from __future__ import annotations

from collections import Counter

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import transaction

from copilot.jobs import services
from copilot.jobs.exceptions import CopilotError, JobLimitReached
from copilot.jobs.models import GenerationJob
from copilot.jobs.selectors import jobs_get_all, jobs_matching
from copilot.ops.management import args
from copilot.ops.management.base import OperatorCommand, Progress

DEFAULT_STATUSES = "failed,timed_out"


class Command(OperatorCommand):
    help = (
        "Retry jobs: each starts a new attempt (a new upstream job), keeping its history. "
        "Name jobs by id, or select them with --status, --since and --kind. Named jobs are "
        "checked first: if any is unknown or not retryable, nothing is changed. A retry counts "
        "against its owner's COPILOT_MAX_ACTIVE_JOBS_PER_USER like a submit: if any job would "
        "pass it, each such job is listed and nothing is changed."
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
            self._dry_run(jobs)
            return
        progress = Progress(stream=self.stderr, total=len(jobs), verb="retried")
        retried, refused = [], []
        try:
            with transaction.atomic():
                for job in jobs:
                    try:
                        job = services.job_retry(job_id=job.id, by=by)
                    except JobLimitReached as exc:
                        refused.append(f"refused {job.id}: {exc}")
                        continue
                    retried.append(f"retried {job.id} (attempt {job.attempt})")
                    progress.advance()
                transaction.set_rollback(bool(refused))
        except CopilotError as exc:
            raise CommandError(f"{exc}; nothing changed") from None
        if refused:
            for line in refused:
                self.stderr.write(line)
            raise CommandError(
                f"{len(refused)} of {len(jobs)} job(s) would pass their owner's active-jobs "
                "limit (COPILOT_MAX_ACTIVE_JOBS_PER_USER); nothing changed"
            )
        for line in retried:
            self.stdout.write(line)
        self.stdout.write(f"{len(jobs)} job(s) queued again")

    def _dry_run(self, jobs: list[GenerationJob]) -> None:
        """What a run would do, the active-jobs limit included (as it stands now)."""
        limit = settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER
        owners = {job.owner_id for job in jobs}
        names = dict(get_user_model().objects.filter(pk__in=owners).values_list("pk", "username"))
        active = Counter(
            GenerationJob.objects.active()
            .filter(owner_id__in=owners)
            .values_list("owner_id", flat=True)
        )
        for job in jobs:
            if active[job.owner_id] >= limit:
                self.stdout.write(
                    f"would refuse {job.id}: {names[job.owner_id]} would have "
                    f"{active[job.owner_id] + 1} active jobs; the limit is {limit}"
                )
                continue
            active[job.owner_id] += 1
            self.stdout.write(f"would retry {job.id} ({job.status}, attempt {job.attempt})")
