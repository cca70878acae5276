"""What the pages show of a job beyond its fields: its goal, errors in words, its agent drawn.

Everything here returns plain data; templates escape it (nothing is marked safe).
"""

from __future__ import annotations

import json
from datetime import timedelta

from copilot.jobs.job_requests import AGENT_FIELD
from copilot.jobs.models import GenerationJob
from copilot.jobs.presenters import job_kind

#: What each client error_type means for the person waiting on the job.
ERROR_SENTENCES: dict[str, str] = {
    "rate_limit": (
        "The Agent Generator is receiving too many requests right now. "
        "Wait a few minutes, then retry."
    ),
    "service_unavailable": (
        "The Agent Generator is temporarily unavailable. Retry in a few minutes."
    ),
    "timeout": "The Agent Generator took too long to answer. Retry in a few minutes.",
    "connection_error": (
        "The portal could not reach the Agent Generator. It may be down; retry later."
    ),
    "http_error": (
        "The Agent Generator refused the request. Retrying rarely helps; "
        "try rewording the request, or tell an administrator."
    ),
    "invalid_response": (
        "The Agent Generator sent an answer the portal could not understand. "
        "Retry; if it happens again, tell an administrator."
    ),
    "job_not_found": (
        "The Agent Generator no longer knows this job (it expired or the service restarted). "
        "Retry to start it again."
    ),
    "job_failed": "The Agent Generator could not finish this job. Retry, or reword the request.",
    "poll_timeout": "The job took longer than the portal waits for a result. Retry to start again.",
    "cancelled": "The job was stopped before it finished. Retry to run it again.",
    "internal_error": (
        "Something went wrong inside the portal. Retry; if it happens again, tell an administrator."
    ),
    "portal_error": (
        "The portal could not store this job's progress. Retry; if it happens again, tell an "
        "administrator."
    ),
}
DEFAULT_ERROR_SENTENCE = "The job did not finish. Retry, or reword the request."


def error_sentence(error_type: str | None) -> str:
    """One sentence a person understands for a job's ``error_type``."""
    return ERROR_SENTENCES.get(error_type or "", DEFAULT_ERROR_SENTENCE)


def job_request_agent(job: GenerationJob) -> dict | None:
    """The agent JSON a job of kind update or customize was given, if any."""
    kind = job_kind(job)
    field = AGENT_FIELD.get(kind) if kind is not None else None
    value = (job.request or {}).get(field) if field else None
    return value if isinstance(value, dict) else None


def result_agent(job: GenerationJob) -> dict | None:
    """The agent a completed job generated, or None."""
    result = job.result or {}
    agent = result.get("agent_json") if isinstance(result, dict) else None
    return agent if isinstance(agent, dict) else None


#: The mark a finished job's tab title starts with (``static/copilot/job_status_text.js`` agrees).
END_MARKS: dict[str, str] = {"completed": "\u2713", "failed": "\u2717", "timed_out": "\u2717"}


def title_state(job: GenerationJob, *, percent: float | None) -> str:
    """The start of a job page's tab title: "42%" while running, "✓ Completed" once ended.

    A background tab shows the job's state at a glance; job_status_text.js keeps it current.
    """
    label = job.get_status_display()
    if job.is_terminal:
        mark = END_MARKS.get(job.status, "\u25a0")
        return f"{mark} {label}"
    if job.status == GenerationJob.Status.RUNNING and percent is not None:
        return f"{round(percent)}%"
    return str(label)


def pretty_json(value: object, *, sort_keys: bool = False) -> str:
    """Indented JSON text for a <pre>; the caller escapes it (a template, or ``format_html``).

    Keys keep their order unless ``sort_keys`` (the admin sorts them); non-ASCII stays as is.
    """
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=sort_keys)


def format_elapsed(value: timedelta | None) -> str:
    """A duration as ``M:SS`` (or ``H:MM:SS`` from one hour), ``—`` when there is none."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"
