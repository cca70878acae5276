"""What the email about an ended attempt says: its subject, a text part and an HTML part.

The parts are Django templates (``templates/copilot/email/``); the HTML one is autoescaped,
so the user's text (the goal in the subject and body) and upstream text (an error message)
are text there too. The link is absolute: ``PORTAL_BASE_URL`` + the job page's path.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.text import Truncator

from copilot.jobs.models import GenerationJob
from copilot.jobs.presenters import job_goal

Status = GenerationJob.Status

#: The mark before the end state in the subject, readable at a glance in an inbox.
STATUS_MARKS = {
    Status.COMPLETED: "✓",
    Status.FAILED: "✗",
    Status.TIMED_OUT: "⏱",
    Status.CANCELLED: "■",
}

#: How much of the user's text the subject shows (words), and the body (characters).
SUBJECT_WORDS = 8
BODY_GOAL_CHARS = 300


def job_url(job: GenerationJob) -> str:
    """The job page's absolute URL, or "" when ``PORTAL_BASE_URL`` is unset (DEBUG off)."""
    base = settings.PORTAL_BASE_URL
    if not base:
        return ""
    return base + reverse("job_detail", kwargs={"job_id": job.id})


def job_text(job: GenerationJob) -> str:
    """The text the user asked with (:func:`~copilot.jobs.presenters.job_goal`), one line."""
    return " ".join(job_goal(job).split())


def job_end_subject(*, job: GenerationJob, status: str) -> str:
    """``✓ Completed: Decompose a goal — Every morning at 8am, email me…`` (one line)."""
    subject = f"{STATUS_MARKS[Status(status)]} {Status(status).label}: {job.get_kind_display()}"
    goal = Truncator(job_text(job)).words(SUBJECT_WORDS)
    return f"{subject} — {goal}" if goal else subject


def job_end_email(
    *, job: GenerationJob, status: str, attempt: int, summary: str, to: str
) -> EmailMultiAlternatives:
    """The email to ``to`` saying that ``attempt`` of ``job`` ended ``status``; ``summary`` is
    one line about its result or error."""
    subject = job_end_subject(job=job, status=status)
    context: dict[str, Any] = {
        "subject": subject,
        "name": job.owner.get_full_name() or job.owner.get_username(),
        "kind": job.get_kind_display(),
        "status": Status(status).label,
        "completed": status == Status.COMPLETED,
        "attempt": attempt,
        "summary": summary,
        "goal": Truncator(job_text(job)).chars(BODY_GOAL_CHARS),
        "url": job_url(job),
        "job_id": job.id,
    }
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("copilot/email/job_ended.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
    )
    message.attach_alternative(
        render_to_string("copilot/email/job_ended.html", context), "text/html"
    )
    return message
