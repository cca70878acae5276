"""``manage.py cancel_jobs ID …``: stop jobs (queued ones at once, running ones via a runner)."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import transaction

from copilot.jobs import services
from copilot.jobs.exceptions import CopilotError
from copilot.jobs.selectors import jobs_get_all
from copilot.ops.management import args
from copilot.ops.management.base import OperatorCommand, Progress


class Command(OperatorCommand):
    help = (
        "Cancel the given jobs. A queued job ends at once; a running one is marked and its "
        "runner cancels the upstream job and ends it 'cancelled'. Every id is checked first: "
        "if any is unknown or already ended, nothing is changed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("job_ids", nargs="+", type=args.job_id, metavar="ID", help="Job ids.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be cancelled; change nothing."
        )
        parser.add_argument("--by", default="operator", help="Who cancels (default: %(default)r)")

    def handle(self, *, job_ids, dry_run: bool, by: str, **options) -> None:
        try:
            jobs = jobs_get_all(job_ids=list(dict.fromkeys(job_ids)))
        except CopilotError as exc:
            raise CommandError(str(exc)) from None
        ended = [job for job in jobs if job.is_terminal]
        if ended:
            job = ended[0]
            raise CommandError(f"job {job.id} has already ended ({job.status}); nothing changed")
        if dry_run:
            for job in jobs:
                self.stdout.write(f"would cancel {job.id} ({job.status})")
            return
        progress = Progress(stream=self.stderr, total=len(jobs), verb="cancelled")
        try:
            with transaction.atomic():
                for job in jobs:
                    job = services.job_cancel(job_id=job.id, by=by)
                    state = "cancelled" if job.is_terminal else "cancel requested"
                    self.stdout.write(f"{state} {job.id}")
                    progress.advance()
        except CopilotError as exc:  # a job ended between the check and the change
            raise CommandError(f"{exc}; nothing changed") from None
