"""Driving one job to its end: submit it once, poll it, log every change, end it once.

:class:`JobDrive` runs inside a :class:`~copilot.runner.runner.Runner`, which holds the job's
lease. Every write names the lease owner, so a runner that lost its lease stops without
writing (``LeaseLost``). The upstream job id is saved the moment the Agent Generator accepts
the job, before the first poll; a job that has one is polled, never submitted again, and a
submit retried under ``<job id>:<attempt>`` as ``Idempotency-Key`` starts nothing twice.
Each change is written (row and event in one transaction) and only then published.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils import timezone

from agent_generator import AgentGeneratorClient, JobUpdate, Operation
from agent_generator.exceptions import AgentGeneratorError, JobCancelled, JobFailed, PollTimeout
from agent_generator.jobs import ACTIVE_STATUSES as UPSTREAM_ACTIVE_STATUSES
from copilot.jobs import events, transitions
from copilot.jobs.exceptions import IllegalTransition, LeaseLost
from copilot.jobs.messaging import event_publish
from copilot.jobs.metrics import job_end_observe
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.transitions import Transition
from copilot.logs import job_id_var
from copilot.runner.database import DatabaseThreads

logger = logging.getLogger(__name__)

Status = GenerationJob.Status


class JobDrive:
    """One job followed by one runner: ``await JobDrive(...).run()``."""

    def __init__(
        self,
        *,
        job_id: uuid.UUID,
        owner: str,
        db: DatabaseThreads,
        client: AgentGeneratorClient,
        cancel: asyncio.Event,
        detach: asyncio.Event,
    ) -> None:
        self.job_id = job_id
        self.owner = owner
        self.db = db
        self.client = client
        self.cancel = cancel
        self.detach = detach
        #: The runner's copy of the job: what its last write stored.
        self.job: GenerationJob | None = None
        self._upstream_status: str | None = None

    async def run(self) -> None:
        """Drive the job until it ends or the runner lets go (LeaseLost, Detached)."""
        job_id_var.set(str(self.job_id))  # on every log line of this job's task (copilot.logs)
        job = self.job = await self.db.call(self.job_id, GenerationJob.objects.get, pk=self.job_id)
        if job.is_terminal:
            return
        if job.cancel_requested_at is not None and not job.upstream_job_id:
            await self.end(transitions.job_cancel_confirmed, error_message="Cancelled.")
            return
        if job.cancel_requested_at is not None:
            self.cancel.set()
        if job.status == Status.QUEUED:
            job = (await self._transition(transitions.job_mark_submitting)).job
        elapsed = (timezone.now() - (job.started_at or timezone.now())).total_seconds()
        remaining = settings.AGENT_GENERATOR_POLL_BUDGET - elapsed
        if remaining <= 0:
            await self.end(transitions.job_time_out, error_message=budget_message())
            return
        logger.info(
            "runner drives job=%s attempt=%s upstream=%s",
            job.id,
            job.attempt,
            job.upstream_job_id or "-",
        )
        try:
            result = await self.client.run(
                operation=Operation(job.kind),
                payload=job.request,
                idempotency_key=f"{job.id}:{job.attempt}",
                upstream_job_id=job.upstream_job_id or None,
                on_update=self._on_update,
                budget=remaining,
                cancel=self.cancel,
                detach=self.detach,
            )
        except JobCancelled as exc:
            await self.end(
                transitions.job_cancel_confirmed,
                error_type=exc.error_type,
                error_message=str(exc),
            )
        except PollTimeout:
            await self.end(transitions.job_time_out, error_message=budget_message())
        except JobFailed as exc:
            await self.end(
                transitions.job_fail,
                error_type=exc.error_type,
                error_message=str(exc),
                upstream_error_type=exc.upstream_error_type,
            )
        except AgentGeneratorError as exc:
            await self.end(transitions.job_fail, error_type=exc.error_type, error_message=str(exc))
        else:
            await self.end(transitions.job_complete, result=result.as_dict())

    async def end(self, transition: Callable[..., Transition], **fields: Any) -> None:
        """End the job with ``transition``; a lost lease or an ended job only logs."""
        try:
            await self._transition(transition, **fields)
            job_end_observe(job=self.job)  # copilot_job_duration_seconds
        except (LeaseLost, IllegalTransition) as exc:
            logger.info("runner end not written job=%s: %s", self.job_id, exc)

    async def _on_update(self, update: JobUpdate) -> None:
        if update.kind == "submitted":
            await self._transition(transitions.job_mark_running, upstream_job_id=update.job_id)
        elif (
            update.kind == "status"
            and update.status in UPSTREAM_ACTIVE_STATUSES
            and update.status != self._upstream_status
        ):
            # (An upstream end is not logged here: the job's own terminal event follows.)
            self._upstream_status = update.status
            await self._event(
                events.event_append,
                type=JobEvent.Type.STATUS,
                data={
                    "status": Status.RUNNING,
                    "upstream_status": update.status,
                    "terminal": False,
                },
            )
        elif update.kind == "progress":
            await self._event(events.job_progress, percent=update.percent, phase=update.phase)

    async def _transition(self, transition: Callable[..., Transition], **fields: Any) -> Transition:
        """Write ``transition`` of the runner's copy under the lease, then publish its event."""
        change = await self.db.call(
            self.job_id, transition, job=self.job, lease_owner=self.owner, publish=False, **fields
        )
        self.job = change.job
        await event_publish(job_id=self.job_id, event=change.event.as_message())
        return change

    async def _event(self, append: Callable[..., JobEvent], **fields: Any) -> JobEvent:
        """Append an event under the lease, then publish it."""
        event = await self.db.call(
            self.job_id,
            append,
            job_id=self.job_id,
            lease_owner=self.owner,
            publish=False,
            **fields,
        )
        await event_publish(job_id=self.job_id, event=event.as_message())
        return event


def budget_message() -> str:
    minutes = settings.AGENT_GENERATOR_POLL_BUDGET / 60
    return f"The Agent Generator did not finish within {minutes:g} minutes."
