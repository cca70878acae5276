"""The polling loop shared by the four operations: follow one job until it ends.

Per answer (see the protocol and ``PollPolicy``):

- Each poll asks ``?wait=W``, W = the current jittered interval capped by
  ``policy.max_wait``, the request timeout and the remaining budget. A long-polling
  service answers as soon as the job changes; one that does not answers at once.
- A change of status or progress is reported through ``on_update`` (once each: an
  answer that changes both gives a ``status`` then a ``progress`` update) and the
  job is polled again at once. Only a status change resets the interval, and not once
  the service is known to hold polls (it reports the next change at once). Seeing the
  progress for the first time is reported but is not a change of the job.
- No change: the interval doubles (up to ``max_interval``). If the service held the
  poll for its whole ``wait`` (long-poll), poll again at once -- the hold was the wait;
  if it answered early, sleep the rest of the planned interval.
- The client learns from those answers whether the service holds polls (no capability
  flag). Once it has seen one that does not, a change is followed by the usual interval
  instead of an immediate poll: without a hold, an immediate poll only finds the state
  just reported, and costs a request.
- A resumed job's first poll asks no ``wait``, so the caller learns its state at once;
  so does the poll after an ``on_update`` that took longer than ``SLOW_UPDATE_SECONDS``
  (the caller's storage was slow or away, e.g. a database restart): a long-poll would be
  held until the *next* change and miss the ones made meanwhile.
- ``Retry-After`` on any answer (or on a 429/503) delays the next poll at least that long.
- Transient errors are retried with the same backoff until ``max_consecutive_errors``
  in a row; one good answer resets the count.
- Terminal: ``completed`` returns the validated result, ``failed`` raises JobFailed,
  ``cancelled`` raises JobCancelled. The budget running out raises PollTimeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from agent_generator.exceptions import (
    JobCancelled,
    JobFailed,
    PollTimeout,
    TransientError,
)
from agent_generator.jobs import JobUpdate, Operation, PollAnswer
from agent_generator.policy import Backoff, PollPolicy
from agent_generator.results import Result, parse_result
from agent_generator.waiting import Waiter

__all__ = ["HELD_FRACTION", "follow_job"]

logger = logging.getLogger(__name__)

HELD_FRACTION = 0.9
"""An answer that took at least this share of its ``wait`` counts as held (long-poll)."""

#: An ``on_update`` slower than this is followed by a poll with no wait (see the docstring).
SLOW_UPDATE_SECONDS = 1.0

PollFn = Callable[..., Awaitable[PollAnswer]]
UpdateFn = Callable[[JobUpdate], Awaitable[None]]


async def follow_job(
    *,
    poll: PollFn,
    job_id: str,
    operation: Operation,
    policy: PollPolicy,
    waiter: Waiter,
    wait_cap: float,
    on_update: UpdateFn | None = None,
    status: str | None = None,
) -> Result:
    """Poll ``job_id`` through ``poll(job_id=..., wait=...)`` until it ends; return its result.

    ``status`` is the status already known (``"queued"`` right after submit, ``None`` when
    resuming) so that only real changes are reported. ``StopRequested`` from the waiter
    propagates to the caller, which decides between DELETE and detach.
    """
    pace = _Pace(policy=policy)
    # The next poll asks no wait: when resuming (nothing known yet: a held poll would hide the
    # job's state until its next change) and after a slow on_update.
    look_now = status is None
    errors = 0
    percent: int | None = None
    phase: str | None = None
    while True:
        waiter.check()
        remaining = waiter.remaining()
        if remaining <= 0:
            raise PollTimeout(f"job {job_id}: polling budget of {policy.budget:g} s spent")
        planned = pace.plan()
        wait = 0.0 if look_now else max(min(planned, wait_cap, remaining), 0.0)
        look_now = False
        started = time.monotonic()
        try:
            answer = await waiter.race(poll(job_id=job_id, wait=wait))
        except TransientError as exc:
            errors += 1
            logger.warning(
                "agent generator poll failed job_id=%s error_type=%s attempt=%s/%s",
                job_id,
                exc.error_type,
                errors,
                policy.max_consecutive_errors,
            )
            if errors >= policy.max_consecutive_errors:
                raise
            await waiter.sleep(pace.after_error(planned=planned, retry_after=exc.retry_after))
            continue
        errors = 0
        elapsed = time.monotonic() - started

        status_changed = answer.status != status
        progress_changed = (answer.percent, answer.phase) != (percent, phase)
        progress_news = progress_changed and (percent, phase) != (None, None)
        status, percent, phase = answer.status, answer.percent, answer.phase
        reported = time.monotonic()
        if status_changed:
            logger.info("agent generator job status job_id=%s status=%s", job_id, status)
            await _emit(on_update, kind="status", answer=answer)
        if progress_changed and (answer.percent, answer.phase) != (None, None):
            await _emit(on_update, kind="progress", answer=answer)

        if answer.terminal:
            return _finish(answer=answer, operation=operation)
        look_now = time.monotonic() - reported > SLOW_UPDATE_SECONDS
        if look_now:
            delay = 0.0  # what happened while on_update took its time is wanted now
        else:
            delay = pace.after_answer(
                planned=planned,
                wait=wait,
                elapsed=elapsed,
                status_changed=status_changed,
                progress_changed=progress_news,
            )
        if answer.retry_after is not None:  # on any answer, a slow update's too
            delay = max(delay, answer.retry_after)
        if delay > 0:
            await waiter.sleep(delay)


class _Pace:
    """When to poll next: the backoff, plus what was learned about the service holding polls."""

    def __init__(self, *, policy: PollPolicy) -> None:
        self._backoff = Backoff(policy=policy)
        self.holds: bool | None = None
        """Whether the service holds ``?wait`` polls: None until an unchanged answer shows it."""

    def plan(self) -> float:
        """The next planned interval (jittered); also the ``wait`` asked, before caps."""
        return self._backoff.next_wait()

    def after_error(self, *, planned: float, retry_after: float | None) -> float:
        self._backoff.grow()
        return planned if retry_after is None else max(planned, retry_after)

    def after_answer(
        self,
        *,
        planned: float,
        wait: float,
        elapsed: float,
        status_changed: bool,
        progress_changed: bool,
    ) -> float:
        """Seconds to sleep before the next poll (``Retry-After`` is applied by the caller)."""
        if status_changed and self.holds is not True:
            # Back to short intervals after a change -- unless the service holds polls: then
            # it tells us of the next change at once anyway, and short holds only add requests.
            self._backoff.reset()
        if status_changed or progress_changed:
            if self.holds is False:
                interval = self._backoff.next_wait() if status_changed else planned
                return interval - elapsed
            return 0.0
        held = wait > 0 and elapsed >= HELD_FRACTION * wait
        if wait > 0:
            self.holds = held
        self._backoff.grow()
        return 0.0 if held else planned - elapsed


async def _emit(
    on_update: UpdateFn | None, *, kind: Literal["status", "progress"], answer: PollAnswer
) -> None:
    if on_update is None:
        return
    await on_update(
        JobUpdate(
            kind=kind,
            job_id=answer.job_id,
            status=answer.status,
            percent=answer.percent,
            phase=answer.phase,
        )
    )


def _finish(*, answer: PollAnswer, operation: Operation) -> Result:
    if answer.status == "failed":
        raise JobFailed(
            answer.error or "Job failed",
            upstream_error_type=answer.error_type,
        )
    if answer.status == "cancelled":
        raise JobCancelled(f"job {answer.job_id} was cancelled by the service")
    result = parse_result(operation=operation, result=answer.result)
    logger.info(
        "agent generator job completed job_id=%s operation=%s type=%s",
        answer.job_id,
        operation,
        result.type,
    )
    return result
