"""Build AgentJSON from steps: one node per step, chained left to right.

Ids are UUIDs derived from the input (``uuid5``), so the same instructions always give
the same agent. Node ``i`` sits at ``x = i * 300``; a link joins the ``primary_output``
of each node to the ``primary_input`` of the next (a trigger has no input, so nothing
links into it). Every link names fields the blocks really have.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Sequence
from typing import Any

from .catalogue import Block, block_by_id, block_by_name, known_block
from .decompose import Step, decompose, match_block
from .extract import extract_inputs
from .limits import DEFAULT_LIMITS, LimitExceededError, Limits

__all__ = [
    "GenerationRefusedError",
    "agent_name",
    "build_agent",
    "generate",
    "layout",
    "make_link",
]

_NAMESPACE = uuid.UUID("0b6c1f5e-3d52-4c1a-8f0e-9a7d2b4c6e31")
_FALLBACK = known_block("Generate text")
X_SPACING = 300


class GenerationRefusedError(Exception):
    """The instructions cannot become an agent; the job fails with ``error_type``."""

    def __init__(self, message: str, *, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def stable_id(*parts: object) -> str:
    """A UUID that depends only on ``parts``."""
    return str(uuid.uuid5(_NAMESPACE, json.dumps(parts, sort_keys=True, default=str)))


def make_link(*, source_id: str, source_name: str, sink_id: str, sink_name: str) -> dict:
    """A Link whose id is derived from what it connects."""
    return {
        "id": stable_id("link", source_id, source_name, sink_id, sink_name),
        "source_id": source_id,
        "sink_id": sink_id,
        "source_name": source_name,
        "sink_name": sink_name,
        "is_static": False,
    }


def layout(nodes: list[dict[str, Any]]) -> None:
    """Place ``nodes`` left to right in list order (``x = i * 300``), keeping each ``y``."""
    for index, node in enumerate(nodes):
        metadata = node.setdefault("metadata", {})
        old = metadata.get("position") if isinstance(metadata.get("position"), dict) else {}
        metadata["position"] = {"x": index * X_SPACING, "y": old.get("y", 0)}


def agent_name(blocks: Sequence[Block]) -> str:
    """A readable name from what the agent does: "Search the web, summarise and email"."""
    verbs = [block.verb for block in blocks if not block.is_trigger]
    verbs = list(dict.fromkeys(verbs)) or ["Run on demand"]
    text = verbs[0] if len(verbs) == 1 else f"{', '.join(verbs[:-1])} and {verbs[-1]}"
    return text[:1].upper() + text[1:]


def _chain_links(nodes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    links = []
    for source, sink in itertools.pairwise(nodes):
        source_block, sink_block = block_by_id(source["block_id"]), block_by_id(sink["block_id"])
        if source_block is None or sink_block is None or sink_block.primary_input is None:
            continue
        links.append(
            make_link(
                source_id=source["id"],
                source_name=source_block.primary_output,
                sink_id=sink["id"],
                sink_name=sink_block.primary_input,
            )
        )
    return links


def build_node(*, agent_id: str, key: object, block: Block, text: str, goal: str) -> dict:
    """A node of ``block`` for the step ``text``; ``key`` makes its id unique in the agent."""
    return {
        "id": stable_id("node", agent_id, key, block.id),
        "block_id": block.id,
        "input_default": extract_inputs(block=block, text=text, goal=goal),
        "metadata": {"position": {"x": 0, "y": 0}},
    }


def build_agent(*, steps: Sequence[Step], goal: str) -> dict[str, Any]:
    """AgentJSON for ``steps`` (version 1, active), described by ``goal``."""
    agent_id = stable_id("agent", goal, [step.as_json() for step in steps])
    nodes = [
        build_node(agent_id=agent_id, key=index, block=step.block, text=step.description, goal=goal)
        for index, step in enumerate(steps)
    ]
    for node, following in itertools.pairwise(nodes):
        # A schedule passes a fixed message on: the value its first step starts from.
        schedule = block_by_id(node["block_id"])
        after = block_by_id(following["block_id"])
        if schedule is not None and schedule.name == "Schedule" and after is not None:
            value = following["input_default"].get(after.primary_input or "", "")
            node["input_default"]["message"] = value if isinstance(value, str) else ""
    name = agent_name([step.block for step in steps])
    queries = [n["input_default"]["query"] for n in nodes if "query" in n["input_default"]]
    for node in nodes:
        if node["input_default"].get("subject") == "":
            node["input_default"]["subject"] = f"Update: {queries[0]}" if queries else name
    layout(nodes)
    return {
        "id": agent_id,
        "version": 1,
        "is_active": True,
        "name": name,
        "description": goal,
        "nodes": nodes,
        "links": _chain_links(nodes),
    }


def _steps_from_instructions(instructions: dict[str, Any]) -> tuple[list[Step], str]:
    if isinstance(instructions.get("steps"), list) and instructions["steps"]:
        steps = []
        for raw in instructions["steps"]:
            text = raw["description"].strip()
            block = block_by_name(raw.get("block_name")) or match_block(text) or _FALLBACK
            steps.append(Step(description=text, block=block))
        goal = instructions.get("goal")
        if not isinstance(goal, str) or not goal.strip():
            goal = ". ".join(step.description for step in steps)
        return steps, goal.strip()
    goal = " ".join(str(instructions["goal"]).split())
    result = decompose(description=goal)
    if result["type"] == "instructions":
        steps = [
            # decompose() names catalogue blocks only.
            Step(description=raw["description"], block=known_block(raw["block_name"]))
            for raw in result["steps"]
        ]
        return steps, goal
    if result["type"] == "clarifying_questions":
        asked = "; ".join(question["question"] for question in result["questions"])
        raise GenerationRefusedError(
            f"The goal needs more detail: {asked}", error_type="needs_input"
        )
    if result["type"] == "unachievable_goal":
        raise GenerationRefusedError(result["reason"], error_type="unachievable_goal")
    raise GenerationRefusedError(
        f"The goal is too vague to build an agent. Try: {result['suggested_goal']}",
        error_type="vague_goal",
    )


def generate(*, instructions: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The generate result for validated ``instructions`` (``steps`` or ``goal``).

    Raises :class:`GenerationRefusedError` when a ``goal`` does not decompose into steps,
    and :class:`~.limits.LimitExceededError` when it decomposes into more than
    ``limits.nodes`` steps (before any node is built).
    """
    steps, goal = _steps_from_instructions(instructions)
    if len(steps) > limits.nodes:
        message = f"The agent this makes would have {len(steps):,} nodes."
        field = "instructions.steps" if instructions.get("steps") else "instructions.goal"
        raise LimitExceededError(
            limit="nodes", bound=limits.nodes, found=len(steps), field=field, message=message
        )
    return {"agent_json": build_agent(steps=steps, goal=goal), "success": True}
