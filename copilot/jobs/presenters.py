"""How jobs and events read as text and JSON (commands, the API, the pages)."""

from __future__ import annotations

import json
from typing import Any

from copilot.jobs.job_requests import TEXT_FIELD
from copilot.jobs.models import GenerationJob, JobEvent


def dicts_in(value: object) -> list[dict[str, Any]]:
    """The dicts of a list from stored JSON (anything else in it, or a non-list: skipped)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def job_kind(job: GenerationJob) -> GenerationJob.Kind | None:
    """The job's kind, or None for a stored value that is not one of ``Kind``."""
    return GenerationJob.Kind(job.kind) if job.kind in GenerationJob.Kind.values else None


def job_goal(job: GenerationJob) -> str:
    """The text the user asked with (a goal, instructions or a change request); the pages
    and the job-end emails show it."""
    kind = job_kind(job)
    field = TEXT_FIELD.get(kind, "") if kind is not None else ""
    value = (job.request or {}).get(field, "")
    if isinstance(value, dict):  # generate: {"goal": text}, or a decompose job's instructions
        goal = value.get("goal")
        if isinstance(goal, str):
            return goal
        steps = [s.get("description") for s in dicts_in(value.get("steps"))]
        texts = [step for step in steps if isinstance(step, str)]
        if steps and len(texts) == len(steps):
            return "; ".join(texts)
        return json.dumps(value, ensure_ascii=False)
    return value if isinstance(value, str) else ""


def job_as_dict(job: GenerationJob) -> dict[str, Any]:
    """The job as the API and ``submit_job --json`` show it."""
    return {
        "id": str(job.id),
        "kind": job.kind,
        "status": job.status,
        "attempt": job.attempt,
        "upstream_job_id": job.upstream_job_id or None,
        "progress": job.progress or None,
        "error_type": job.error_type or None,
        "error_message": job.error_message or None,
        "result": job.result,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "last_event_seq": job.last_event_seq,
        "notify_email": job.notify_email,
    }


def result_summary(result: dict | None) -> str:
    """One line about a result: its type and its size."""
    if not result:
        return "no result"
    kind = result.get("type", "result")
    if kind == "instructions":
        return f"instructions ({len(result.get('steps', []))} steps)"
    if kind == "clarifying_questions":
        return f"clarifying questions ({len(result.get('questions', []))})"
    if kind == "agent":
        agent = result.get("agent_json") or {}
        return f"agent ({len(agent.get('nodes', []))} nodes, {len(agent.get('links', []))} links)"
    return str(kind).replace("_", " ")


def event_line(event: JobEvent) -> str:
    """One line per event, as ``submit_job --wait`` prints them."""
    data = event.data or {}
    head = f"#{event.seq} {event.type}"
    if event.type == JobEvent.Type.PROGRESS:
        percent = data.get("percent")
        return (
            f"{head} {percent if percent is not None else '?'}% {data.get('phase') or ''}".rstrip()
        )
    if event.type == JobEvent.Type.RESULT:
        return f"{head} {data.get('status')}: {result_summary(data.get('result'))}"
    if event.type == JobEvent.Type.ERROR:
        return f"{head} {data.get('status')}: {data.get('error_type')}: {data.get('error_message')}"
    if "upstream_status" in data:
        return f"{head} {data.get('status')} (upstream {data['upstream_status']})"
    if event.type == JobEvent.Type.RETRY:
        return f"{head} attempt {data.get('attempt')}"
    if event.type == JobEvent.Type.CANCEL_REQUESTED:
        return f"{head} by {data.get('by')}"
    return f"{head} {data.get('status', '')}".rstrip()
