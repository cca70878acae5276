"""Typed results of the Agent Generator, validated from the service's JSON.

What each operation can return (``run()`` returns exactly one of these):

- ``Operation.DECOMPOSE``: ``Instructions``, ``ClarifyingQuestions``, ``UnachievableGoal``,
  ``VagueGoal`` or ``DecomposeError`` (the service's own refusal, a result, not an exception).
- ``Operation.GENERATE``, ``Operation.UPDATE``, ``Operation.CUSTOMIZE``: ``AgentResult``,
  or ``ClarifyingQuestions`` when the service needs more detail (the protocol names it for
  update and customize; it is accepted for generate too).

Every result has ``type`` and ``as_dict()`` (JSON-ready, what the portal stores);
``result_from_dict()`` reads such a dict back. ``Health`` and ``Block`` are the answers of
``GET /health`` and ``GET /api/blocks``. Anything malformed raises ``InvalidResponse``
naming the offending field.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent_generator.exceptions import InvalidResponse
from agent_generator.jobs import Operation

__all__ = [
    "AgentResult",
    "Block",
    "Blocks",
    "ClarifyingQuestion",
    "ClarifyingQuestions",
    "DecomposeError",
    "DecomposeResult",
    "Health",
    "InstructionStep",
    "Instructions",
    "Result",
    "UnachievableGoal",
    "VagueGoal",
    "parse_blocks",
    "parse_health",
    "parse_result",
    "result_from_dict",
]


@dataclass(frozen=True, kw_only=True)
class InstructionStep:
    """One step of a decomposed goal; fields beyond the known ones are kept in ``extra``."""

    description: str
    action: str | None = None
    block_name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = copy.deepcopy(dict(self.extra))
        data["description"] = self.description
        if self.action is not None:
            data["action"] = self.action
        if self.block_name is not None:
            data["block_name"] = self.block_name
        return data


@dataclass(frozen=True, kw_only=True)
class Instructions:
    """Decompose succeeded: the goal as ordered steps."""

    type: ClassVar[str] = "instructions"
    steps: tuple[InstructionStep, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "steps": [step.as_dict() for step in self.steps]}


@dataclass(frozen=True, kw_only=True)
class ClarifyingQuestion:
    question: str
    keyword: str
    example: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = {"question": self.question, "keyword": self.keyword}
        if self.example is not None:
            data["example"] = self.example
        return data


@dataclass(frozen=True, kw_only=True)
class ClarifyingQuestions:
    """The service needs answers before it can go on."""

    type: ClassVar[str] = "clarifying_questions"
    questions: tuple[ClarifyingQuestion, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "questions": [q.as_dict() for q in self.questions]}


@dataclass(frozen=True, kw_only=True)
class UnachievableGoal:
    """The goal cannot be done with the available blocks; a feasible one is suggested."""

    type: ClassVar[str] = "unachievable_goal"
    reason: str
    suggested_goal: str

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "reason": self.reason, "suggested_goal": self.suggested_goal}


@dataclass(frozen=True, kw_only=True)
class VagueGoal:
    """The goal is too vague; a more precise one is suggested."""

    type: ClassVar[str] = "vague_goal"
    suggested_goal: str

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "suggested_goal": self.suggested_goal}


@dataclass(frozen=True, kw_only=True)
class DecomposeError:
    """The decomposer itself reported an error (a completed job, not a failed one)."""

    type: ClassVar[str] = "error"
    error: str
    error_type: str

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "error": self.error, "error_type": self.error_type}


@dataclass(frozen=True, kw_only=True)
class AgentResult:
    """A generated, updated or customized agent (validated AgentJSON)."""

    type: ClassVar[str] = "agent"
    agent_json: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "agent_json": copy.deepcopy(dict(self.agent_json))}


DecomposeResult = Instructions | ClarifyingQuestions | UnachievableGoal | VagueGoal | DecomposeError
Result = DecomposeResult | AgentResult


@dataclass(frozen=True, kw_only=True)
class Health:
    """``GET /health``: ``status`` is ``"healthy"`` on a working service."""

    status: str
    blocks_loaded: bool

    @property
    def healthy(self) -> bool:
        return self.status == "healthy"


@dataclass(frozen=True, kw_only=True)
class Block:
    """One building block the generator can use; the full JSON object is kept in ``data``."""

    id: str
    name: str
    description: str = ""
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)


Blocks = list[Block]
"""What ``get_blocks()`` returns."""


def parse_result(*, operation: Operation, result: object) -> Result:
    """Validate the ``result`` of a completed job of ``operation`` into its typed result."""
    if not isinstance(result, dict):
        raise InvalidResponse(f"{operation} result is not an object")
    kind = result.get("type")
    if operation is Operation.DECOMPOSE:
        parser = _DECOMPOSE_PARSERS.get(kind) if isinstance(kind, str) else None
        if parser is None:
            raise InvalidResponse(f"decompose result has unknown type {kind!r:.80}")
        return parser(result)
    if kind == ClarifyingQuestions.type:
        return _clarifying_questions(result)
    return _agent(result, operation=operation)


def result_from_dict(data: Mapping[str, Any]) -> Result:
    """Rebuild a result from its ``as_dict()`` form (what the portal stored)."""
    if not isinstance(data, Mapping):
        raise InvalidResponse("stored result is not an object")
    kind = data.get("type")
    if kind == AgentResult.type:
        return _agent(data, operation=None)
    parser = _DECOMPOSE_PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise InvalidResponse(f"stored result has unknown type {kind!r:.80}")
    return parser(data)


def parse_health(*, body: object) -> Health:
    """Validate a ``GET /health`` answer."""
    if not isinstance(body, dict):
        raise InvalidResponse("health answer is not an object")
    status = _text(body, "status", where="health")
    blocks_loaded = body.get("blocks_loaded", False)
    if not isinstance(blocks_loaded, bool):
        raise InvalidResponse("health: 'blocks_loaded' is not a boolean")
    return Health(status=status, blocks_loaded=blocks_loaded)


def parse_blocks(*, body: object) -> list[Block]:
    """Validate a ``GET /api/blocks`` answer."""
    if not isinstance(body, dict) or body.get("success") is not True:
        raise InvalidResponse("blocks answer is not {'success': true, ...}")
    blocks = body.get("blocks")
    if not isinstance(blocks, list):
        raise InvalidResponse("blocks: 'blocks' is not a list")
    parsed = []
    for index, item in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(item, dict):
            raise InvalidResponse(f"{where} is not an object")
        description = item.get("description", "")
        parsed.append(
            Block(
                id=_text(item, "id", where=where),
                name=_text(item, "name", where=where),
                description=description if isinstance(description, str) else "",
                data=item,
            )
        )
    return parsed


def _text(data: Mapping[str, Any], key: str, *, where: str, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidResponse(f"{where}: '{key}' is missing or not a string")
    return value


def _items(data: Mapping[str, Any], key: str, *, where: str) -> list[dict[str, Any]]:
    items = data.get(key)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise InvalidResponse(f"{where}: '{key}' is not a list of objects")
    return items


def _instructions(result: Mapping[str, Any]) -> Instructions:
    steps = []
    for index, raw in enumerate(_items(result, "steps", where="instructions")):
        where = f"instructions.steps[{index}]"
        known = {"description", "action", "block_name"}
        steps.append(
            InstructionStep(
                description=_text(raw, "description", where=where),
                action=_text(raw, "action", where=where, optional=True),
                block_name=_text(raw, "block_name", where=where, optional=True),
                extra={k: v for k, v in raw.items() if k not in known},
            )
        )
    if not steps:
        raise InvalidResponse("instructions: 'steps' is empty")
    return Instructions(steps=tuple(steps))


def _clarifying_questions(result: Mapping[str, Any]) -> ClarifyingQuestions:
    questions = []
    for index, raw in enumerate(_items(result, "questions", where="clarifying_questions")):
        where = f"clarifying_questions.questions[{index}]"
        questions.append(
            ClarifyingQuestion(
                question=_text(raw, "question", where=where),
                keyword=_text(raw, "keyword", where=where),
                example=_text(raw, "example", where=where, optional=True),
            )
        )
    if not questions:
        raise InvalidResponse("clarifying_questions: 'questions' is empty")
    return ClarifyingQuestions(questions=tuple(questions))


def _unachievable(result: Mapping[str, Any]) -> UnachievableGoal:
    return UnachievableGoal(
        reason=_text(result, "reason", where="unachievable_goal"),
        suggested_goal=_text(result, "suggested_goal", where="unachievable_goal"),
    )


def _vague(result: Mapping[str, Any]) -> VagueGoal:
    return VagueGoal(suggested_goal=_text(result, "suggested_goal", where="vague_goal"))


def _decompose_error(result: Mapping[str, Any]) -> DecomposeError:
    return DecomposeError(
        error=_text(result, "error", where="error"),
        error_type=_text(result, "error_type", where="error"),
    )


_DECOMPOSE_PARSERS: dict[str, Callable[[Mapping[str, Any]], DecomposeResult]] = {
    Instructions.type: _instructions,
    ClarifyingQuestions.type: _clarifying_questions,
    UnachievableGoal.type: _unachievable,
    VagueGoal.type: _vague,
    DecomposeError.type: _decompose_error,
}


def _agent(result: Mapping[str, Any], *, operation: Operation | None) -> AgentResult:
    where = f"{operation} result" if operation else "agent result"
    agent_json = result.get("agent_json")
    if not isinstance(agent_json, dict):
        raise InvalidResponse(f"{where}: 'agent_json' is missing or not an object")
    nodes = _items(agent_json, "nodes", where=f"{where}: agent_json")
    links = _items(agent_json, "links", where=f"{where}: agent_json")
    node_ids = set()
    for index, node in enumerate(nodes):
        node_id = node.get("id")
        if not isinstance(node_id, str) or not node_id:
            raise InvalidResponse(f"{where}: agent_json.nodes[{index}] has no string 'id'")
        if not isinstance(node.get("block_id"), str):
            raise InvalidResponse(f"{where}: agent_json.nodes[{index}] has no string 'block_id'")
        node_ids.add(node_id)
    for index, link in enumerate(links):
        for end in ("source_id", "sink_id"):
            if link.get(end) not in node_ids:
                raise InvalidResponse(
                    f"{where}: agent_json.links[{index}].{end} {link.get(end)!r:.80} "
                    "names no node of the agent"
                )
    return AgentResult(agent_json=agent_json)
