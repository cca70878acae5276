"""How jobs and events read as text and JSON (commands, the API, the pages)."""

from __future__ import annotations

from typing import Any

from copilot.jobs.models import GenerationJob, JobEvent


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
