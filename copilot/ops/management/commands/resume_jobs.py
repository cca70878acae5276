"""``manage.py resume_jobs``: take over stale jobs now and follow them to their end."""

from __future__ import annotations

import asyncio

from django.utils import timezone

from copilot.jobs.models import GenerationJob
from copilot.ops.management.base import OperatorCommand
from copilot.runner.runner import Runner


class Command(OperatorCommand):
    help = (
        "Take over the jobs no runner holds (never claimed, released, or whose lease "
        "expired) and follow them in this process until they end: the same scan every runner "
        "makes, on demand. A job with an upstream job id is polled, never submitted again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List the stale jobs; take none over."
        )

    def handle(self, *, dry_run: bool, **options) -> None:
        stale = list(GenerationJob.objects.stale(now=timezone.now()).order_by("created_at"))
        if dry_run or not stale:
            for job in stale:
                upstream = job.upstream_job_id or "not submitted yet"
                self.stdout.write(f"stale {job.id} ({job.status}, upstream {upstream})")
            self.stdout.write(f"{len(stale)} stale job(s)")
            return
        claimed = asyncio.run(_resume(stdout=self.stdout))
        for job in GenerationJob.objects.filter(pk__in=claimed).order_by("created_at"):
            self.stdout.write(f"{job.id} {job.status}")
        self.stdout.write(f"resumed {len(claimed)} job(s)")


async def _resume(*, stdout) -> list:
    runner = Runner()
    task = asyncio.create_task(runner.run())
    await asyncio.to_thread(runner.first_scan.wait)
    claimed = runner.first_claimed
    stdout.write(f"took over {len(claimed)} job(s); following them to their end")
    await runner.follow(claimed)
    runner.stop()
    await task
    return claimed
