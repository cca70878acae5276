"""What the pages show of a job beyond its fields: its goal, errors in words, its agent drawn.

Everything here returns plain data; templates escape it (nothing is marked safe).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from copilot.jobs.job_requests import AGENT_FIELD, TEXT_FIELD
from copilot.jobs.models import GenerationJob

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
}
DEFAULT_ERROR_SENTENCE = "The job did not finish. Retry, or reword the request."


def error_sentence(error_type: str | None) -> str:
    """One sentence a person understands for a job's ``error_type``."""
    return ERROR_SENTENCES.get(error_type or "", DEFAULT_ERROR_SENTENCE)


def _job_kind(job: GenerationJob) -> GenerationJob.Kind | None:
    """The job's kind, or None for a stored value that is not one of ``Kind``."""
    return GenerationJob.Kind(job.kind) if job.kind in GenerationJob.Kind.values else None


def job_goal(job: GenerationJob) -> str:
    """The text the user asked with (a goal, instructions or a change request)."""
    kind = _job_kind(job)
    field = TEXT_FIELD.get(kind, "") if kind is not None else ""
    value = (job.request or {}).get(field, "")
    if isinstance(value, dict):  # generate: {"goal": text}, or a decompose job's instructions
        goal = value.get("goal")
        if isinstance(goal, str):
            return goal
        steps = [s.get("description") for s in _dicts(value.get("steps"))]
        texts = [step for step in steps if isinstance(step, str)]
        if steps and len(texts) == len(steps):
            return "; ".join(texts)
        return json.dumps(value, ensure_ascii=False)
    return value if isinstance(value, str) else ""


def job_request_agent(job: GenerationJob) -> dict | None:
    """The agent JSON a job of kind update or customize was given, if any."""
    kind = _job_kind(job)
    field = AGENT_FIELD.get(kind) if kind is not None else None
    value = (job.request or {}).get(field) if field else None
    return value if isinstance(value, dict) else None


def result_agent(job: GenerationJob) -> dict | None:
    """The agent a completed job generated, or None."""
    result = job.result or {}
    agent = result.get("agent_json") if isinstance(result, dict) else None
    return agent if isinstance(agent, dict) else None


def _block_name(block_id: object) -> str:
    try:
        from agent_generator.reference.catalogue import block_by_id
    except ImportError:  # the reference catalogue is optional
        return str(block_id)
    block = block_by_id(block_id)
    return block.name if block is not None else str(block_id)


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def agent_diagram(agent: dict[str, Any]) -> dict[str, Any]:
    """What ``agent_diagram.js`` draws: nodes labelled with block names, links with ports.

    ``{"nodes": [{"id", "label", "block_id", "x", "y"}], "links": [{"source", "sink", "label"}]}``;
    ``x``/``y`` are the editor's positions (or null); ``x`` orders the nodes of a layer.
    """
    nodes = []
    for node in _dicts(agent.get("nodes")):
        position = (node.get("metadata") or {}).get("position") or {}
        if not isinstance(position, dict):
            position = {}
        x, y = position.get("x"), position.get("y")
        nodes.append(
            {
                "id": str(node.get("id")),
                "label": _block_name(node.get("block_id")),
                "block_id": str(node.get("block_id")),
                "x": x if isinstance(x, int | float) else None,
                "y": y if isinstance(y, int | float) else None,
            }
        )
    links = [
        {
            "source": str(link.get("source_id")),
            "sink": str(link.get("sink_id")),
            "label": f"{link.get('source_name', '')}\u2192{link.get('sink_name', '')}",
        }
        for link in _dicts(agent.get("links"))
    ]
    return {"nodes": nodes, "links": links}


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
