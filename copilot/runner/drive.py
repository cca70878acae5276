"""Driving one job to its end: submit it once, poll it, log every change, end it once.

:class:`JobDrive` runs inside a :class:`~copilot.runner.runner.Runner`, which holds the job's
lease. Every write names the lease owner, so a runner that lost its lease stops without
writing (``LeaseLost``). The upstream job id is saved the moment the Agent Generator accepts
the job, before the first poll; a job that has one is polled, never submitted again, and a
submit retried under ``<job id>:<attempt>`` as ``Idempotency-Key`` starts nothing twice.
Each change is written (row and event in one transaction) and only then published.

A write that meets a database outage (:mod:`copilot.runner.outage`) is retried until the
database is back, and the drive waits for it: polling pauses, so what happens upstream
meanwhile is written in order afterwards. The wait is bounded by the lease: once the runner's
heartbeat could not be renewed for ``COPILOT_RUNNER_DEAD_SECONDS``, a peer may hold the job,
so the drive stops without writing (``LeaseLost``) and whoever holds the job next resumes it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

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
from copilot.runner.outage import retrying

logger = logging.getLogger(__name__)

Status = GenerationJob.Status

T = TypeVar("T")


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
        lease_left: Callable[[], float],
    ) -> None:
        self.job_id = job_id
        self.owner = owner
        self.db = db
        self.client = client
        self.cancel = cancel
        self.detach = detach
        #: Seconds this runner's lease on its jobs still holds (its heartbeat's age against
        #: COPILOT_RUNNER_DEAD_SECONDS); how long a write may wait out a database outage.
        self.lease_left = lease_left
        #: The runner's copy of the job: what its last write stored.
        self.job: GenerationJob | None = None
        #: The newest event seq this drive has seen stored (where a lost write is looked for).
        self._seq = 0
        self._upstream_status: str | None = None

    async def run(self) -> None:
        """Drive the job until it ends or the runner lets go (LeaseLost, Detached)."""
        job_id_var.set(str(self.job_id))  # on every log line of this job's task (copilot.logs)
        job = self.job = await self._db(GenerationJob.objects.get, pk=self.job_id)
        self._seq = job.last_event_seq
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
            progress = {"percent": update.percent, "phase": update.phase}
            await self._event(
                events.job_progress, type=JobEvent.Type.PROGRESS, data=progress, fields=progress
            )

    async def _transition(self, transition: Callable[..., Transition], **fields: Any) -> Transition:
        """Write ``transition`` of the runner's copy under the lease, then publish its event."""
        job = self.job
        to = transitions.TARGET_STATUS.get(transition)
        reconcile = None
        if to is not None:
            reconcile = functools.partial(
                self.db.call,
                self.job_id,
                transitions.transition_written,
                job=job,
                to=to,
                after_seq=self._seq,
            )
        change = await self._db(
            transition,
            reconcile=reconcile,
            job=job,
            lease_owner=self.owner,
            publish=False,
            **fields,
        )
        self.job = change.job
        self._seq = max(self._seq, change.event.seq)
        await event_publish(job_id=self.job_id, event=change.event.as_message())
        return change

    async def _event(
        self,
        append: Callable[..., JobEvent],
        *,
        type: str,
        data: Mapping[str, Any],
        fields: Mapping[str, Any] | None = None,
    ) -> JobEvent:
        """Append an event (``type`` with ``data``) under the lease, then publish it.

        ``append`` is given ``fields`` (default: ``type`` and ``data``, as
        :func:`~copilot.jobs.events.event_append` takes them)."""
        reconcile = functools.partial(
            self.db.call,
            self.job_id,
            events.event_written,
            job_id=self.job_id,
            after_seq=self._seq,
            type=type,
            data=data,
        )
        if fields is None:
            fields = {"type": type, "data": data}
        event = await self._db(
            append,
            reconcile=reconcile,
            job_id=self.job_id,
            lease_owner=self.owner,
            publish=False,
            **fields,
        )
        self._seq = max(self._seq, event.seq)
        await event_publish(job_id=self.job_id, event=event.as_message())
        return event

    async def _db(
        self,
        fn: Callable[..., T],
        /,
        *,
        reconcile: Callable[[], Awaitable[T | None]] | None = None,
        **kwargs: Any,
    ) -> T:
        """``fn(**kwargs)`` on this job's database thread, through a database outage: retried
        until the database is back, as long as the lease holds (see the module docstring)."""
        return await retrying(
            functools.partial(self.db.call, self.job_id, fn, **kwargs),
            give_up=self._give_up,
            reconcile=reconcile,
            interrupt=self.detach,
            outage=self.db.outage,
        )

    def _give_up(self) -> None:
        """Stop waiting for the database when the job is let go or the lease has run out."""
        if self.detach.is_set():
            raise LeaseLost(f"job {self.job_id} let go while the database was unavailable")
        if self.lease_left() <= 0:
            raise LeaseLost(
                f"job {self.job_id}: the database was unavailable for longer than the lease"
            )


def budget_message() -> str:
    minutes = settings.AGENT_GENERATOR_POLL_BUDGET / 60
    return f"The Agent Generator did not finish within {minutes:g} minutes."
