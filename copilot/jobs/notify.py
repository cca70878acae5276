"""An email to a job's owner when an attempt of it ends: one per attempt, after the commit,
off the runner's path, and never a reason for the job to change.

Every change to a terminal status (:mod:`copilot.jobs.transitions`) of a job with
``notify_email`` calls :func:`notify_on_commit`. Once that change commits, the attempt's end
is handed to a small thread pool: the runner's database thread that wrote it only queues it.
In the pool the job's row is claimed for the attempt in one statement (``UPDATE … SET
notified_attempt = <attempt> WHERE notified_attempt < <attempt>``), so whichever process or
thread gets there twice, one sends. Then the mail is sent through Django's email framework
(``EMAIL_URL``); a failed send is logged and retried after each of :data:`RETRY_DELAYS`, then
given up, logged as an error. Nothing of this writes to the job but ``notified_attempt``.

Mailed: completed, failed and timed out; cancelled only when the owner did not ask for it (an
admin's or an operator's cancel, or the Agent Generator's own). No mail when the owner has no
email address. At most once: a process that dies between the claim and the send loses that
mail.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils.text import Truncator

from copilot.jobs import emails
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.presenters import result_summary

logger = logging.getLogger(__name__)

Status = GenerationJob.Status

#: Seconds to wait before each new try of a send that failed (three retries, then given up).
RETRY_DELAYS: tuple[float, ...] = (2.0, 10.0, 30.0)

#: Threads that send; a send waits on the mail server, never on a runner.
SENDER_THREADS = 2

#: The longest error line an email quotes.
SUMMARY_CHARS = 300

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class AttemptEnd:
    """What ended, as the terminal change wrote it (a retry may change the row before the
    mail goes out): the attempt, its status, the event that logged it, one line about it."""

    job_id: uuid.UUID
    attempt: int
    status: str
    event_seq: int
    summary: str


def attempt_end(*, job: GenerationJob, event_seq: int) -> AttemptEnd:
    """The end of ``job``'s current attempt, just written (with the event ``event_seq``)."""
    if job.status == Status.COMPLETED:
        summary = result_summary(job.result if isinstance(job.result, dict) else None)
    else:
        lines = (job.error_message or job.error_type or job.get_status_display()).splitlines()
        summary = Truncator(lines[0]).chars(SUMMARY_CHARS) if lines else ""
    return AttemptEnd(
        job_id=job.id,
        attempt=job.attempt,
        status=job.status,
        event_seq=event_seq,
        summary=summary,
    )


def notify_on_commit(*, job: GenerationJob, event_seq: int) -> None:
    """Once the current transaction commits, have the end of ``job``'s attempt mailed (if its
    owner asked for it). Costs the caller nothing but queueing."""
    if not job.notify_email or job.status not in GenerationJob.TERMINAL_STATUSES:
        return
    end = attempt_end(job=job, event_seq=event_seq)
    transaction.on_commit(lambda: _queue(end))


def _queue(end: AttemptEnd) -> None:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=SENDER_THREADS, thread_name_prefix="job-mail")
        pool = _pool
    try:
        pool.submit(_run, end)
    except RuntimeError:  # the interpreter is shutting down
        logger.warning(
            "job email not sent id=%s attempt=%s: shutting down", end.job_id, end.attempt
        )


def _run(end: AttemptEnd) -> None:
    try:
        job_end_notify(end=end)
    except Exception:
        logger.exception("job email failed id=%s attempt=%s", end.job_id, end.attempt)
    finally:
        connection.close()  # this thread's own; the next task opens one when it needs it


def job_end_notify(*, end: AttemptEnd, retry_delays: Sequence[float] = RETRY_DELAYS) -> bool:
    """Claim the attempt's email and send it; True when it went out.

    False when another call claimed it first, the owner asked for the cancel or has no email
    address, the job is gone, or every try failed (each logged).
    """
    claimed = GenerationJob.objects.filter(pk=end.job_id, notified_attempt__lt=end.attempt).update(
        notified_attempt=end.attempt
    )
    if not claimed:
        logger.info("job email already claimed id=%s attempt=%s", end.job_id, end.attempt)
        return False
    job = GenerationJob.objects.select_related("owner").filter(pk=end.job_id).first()
    if job is None:
        return False
    if end.status == Status.CANCELLED and _owner_cancelled(job=job, end=end):
        logger.info("job email skipped id=%s attempt=%s: owner cancelled", job.id, end.attempt)
        return False
    address = job.owner.email
    if not address:
        logger.info("job email skipped id=%s attempt=%s: owner has no address", job.id, end.attempt)
        return False
    message = emails.job_end_email(
        job=job, status=end.status, attempt=end.attempt, summary=end.summary, to=address
    )
    delays = list(retry_delays)
    tries = len(delays) + 1
    for number in range(1, tries + 1):
        try:
            message.send()
        except Exception:
            if number == tries:
                logger.exception(
                    "job email given up id=%s attempt=%s tries=%s", job.id, end.attempt, tries
                )
                return False
            delay = delays[number - 1]
            logger.warning(
                "job email failed id=%s attempt=%s try=%s; again in %ss",
                job.id,
                end.attempt,
                number,
                delay,
                exc_info=True,
            )
            time.sleep(delay)
        else:
            logger.info(
                "job email sent id=%s attempt=%s status=%s", job.id, end.attempt, end.status
            )
            return True
    return False  # not reached: the last try returns


def _owner_cancelled(*, job: GenerationJob, end: AttemptEnd) -> bool:
    """Whether the owner asked for this attempt's cancel: the newest ``by`` of the attempt's
    cancel events (a request, or a queued job's cancel) names them."""
    events = (
        JobEvent.objects.filter(
            job_id=job.id,
            seq__lte=end.event_seq,
            type__in=[JobEvent.Type.CANCEL_REQUESTED, JobEvent.Type.STATUS, JobEvent.Type.RETRY],
        )
        .order_by("-seq")
        .values_list("type", "data")
    )
    for type_, data in events.iterator():
        if type_ == JobEvent.Type.RETRY:
            return False  # the attempt's first event: nobody asked
        by = (data or {}).get("by")
        if by:
            return by == str(job.owner)
    return False
