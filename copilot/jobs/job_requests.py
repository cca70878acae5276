"""What a job request of each kind may contain: one pydantic schema per kind, the only rules.

Every door a job comes in by uses these schemas and nothing else: the JSON API (django-ninja
validates its body with :data:`JobRequest` and documents it in the OpenAPI schema), the
new-job form (it parses what was typed or uploaded, then :func:`job_request_clean` judges it
and the form shows the errors beside its fields) and ``submit_job``. A rule is written once,
here, and every door answers the same message for the same field: :func:`field_errors` turns
pydantic's errors into ``{field: message}``.

The fields are the Agent Generator protocol's (``docs/agent-generator-protocol.md``), with the
portal's limits: text length, agent size (nodes, links, bytes) and nesting depth, the keys
each kind takes (no others), and values PostgreSQL can store (:mod:`copilot.jobs.json_limits`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from copilot.jobs.exceptions import InvalidJobRequest
from copilot.jobs.json_limits import text_problem, value_problem
from copilot.jobs.models import GenerationJob

Kind = GenerationJob.Kind

MAX_TEXT_CHARS = 10_000
#: The largest agent accepted, as compact JSON (bytes), whichever door it comes in by.
MAX_AGENT_BYTES = 1024 * 1024
#: An agent's nodes and links, and a generate request's steps, at most (the reference's limits).
MAX_AGENT_NODES = 500
MAX_AGENT_LINKS = 2_000
MAX_LIBRARY_AGENTS = 100

#: For each kind: its text field, and its agent-JSON field if it has one.
TEXT_FIELD = {
    Kind.DECOMPOSE: "description",
    Kind.GENERATE: "instructions",
    Kind.UPDATE: "update_request",
    Kind.CUSTOMIZE: "modification_request",
}
AGENT_FIELD = {Kind.UPDATE: "current_agent_json", Kind.CUSTOMIZE: "template_agent_json"}


def _storable(value: Any) -> Any:
    """Refuse a value nested too deep, or holding what PostgreSQL cannot store, anywhere in
    it (keys and the open models' extra keys too); run on the raw value, before the model."""
    if isinstance(value, dict | list | str | float) and (problem := value_problem(value)):
        raise PydanticCustomError("unstorable", problem)
    return value


def _storable_text(value: str) -> str:
    if problem := text_problem(value):
        raise PydanticCustomError("unstorable", problem)
    return value


def agent_too_large(size: int) -> str:
    """The message for an agent of ``size`` bytes over :data:`MAX_AGENT_BYTES`."""
    return f"The agent is {size:,} bytes as JSON; the limit is {MAX_AGENT_BYTES:,} bytes."


def _agent_sized(value: Any) -> Any:
    """Depth and storability first (a deep agent is refused before it is measured), then size."""
    if isinstance(value, dict):
        _storable(value)
        compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        size = len(compact.encode("utf-8", "surrogatepass"))
        if size > MAX_AGENT_BYTES:
            raise PydanticCustomError("agent_too_large", agent_too_large(size))
    return value


#: Text a person wrote: trimmed, not empty, at most MAX_TEXT_CHARS, storable.
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS),
    AfterValidator(_storable_text),
]
#: Any JSON object, nested at most MAX_VALUE_DEPTH levels, storable.
JsonObject = Annotated[dict[str, Any], AfterValidator(_storable)]
#: A name or an id: any text PostgreSQL can store.
Name = Annotated[str, AfterValidator(_storable_text)]


class _Open(BaseModel):
    """A protocol object: the fields named here are checked, other keys pass through."""

    model_config = ConfigDict(extra="allow")


class AgentNode(_Open):
    id: Annotated[Name, Field(min_length=1)]
    block_id: Name | None = None
    input_default: JsonObject | None = None
    metadata: JsonObject | None = None


class AgentLink(_Open):
    source_id: Name | None = None
    sink_id: Name | None = None
    source_name: Name | None = None
    sink_name: Name | None = None


class Agent(_Open):
    """An AgentJSON, as a finished job's ``agent.json`` download holds it."""

    name: Name | None = None
    description: Name | None = None
    nodes: list[AgentNode] = Field(default_factory=list, max_length=MAX_AGENT_NODES)
    links: list[AgentLink] = Field(default_factory=list, max_length=MAX_AGENT_LINKS)


AgentJson = Annotated[Agent, Field(description="An AgentJSON object.")]


class LibraryAgent(_Open):
    graph_id: Name | None = None
    graph_version: int | None = None
    name: Name | None = None
    description: Name | None = None
    input_schema: JsonObject | None = None
    output_schema: JsonObject | None = None


class Step(_Open):
    description: Text


class Instructions(_Open):
    """Generate's instructions as an object: a goal, or the steps a decompose answered."""

    goal: Text | None = None
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=MAX_AGENT_NODES)

    @model_validator(mode="after")
    def _goal_or_steps(self) -> Instructions:
        if self.goal is None and self.steps is None:
            raise PydanticCustomError(
                "instructions_empty", "Needs 'goal' (text) or 'steps' (a non-empty list)."
            )
        return self


def _text_or_object(value: Any) -> str | None:
    """The tag of generate's instructions: asked on input (JSON) and on output (a model)."""
    if isinstance(value, str):
        return "text"
    return "object" if isinstance(value, dict | Instructions) else None


#: Generate's instructions: plain text (the goal) or an Instructions object.
InstructionsField = Annotated[
    Annotated[Text, Tag("text")] | Annotated[Instructions, Tag("object")],
    Discriminator(
        _text_or_object,
        custom_error_type="text_or_object",
        custom_error_message="Must be text or a JSON object.",
    ),
    BeforeValidator(_storable),
]
LibraryAgents = Annotated[
    list[LibraryAgent], Field(max_length=MAX_LIBRARY_AGENTS), BeforeValidator(_storable)
]


class _Request(BaseModel):
    """The fields one kind of job takes, and no others."""

    model_config = ConfigDict(extra="forbid")

    #: The portal's own field, not the protocol's: not sent upstream.
    notify_email: bool = Field(
        default=False, description="Email the owner when each attempt of the job ends."
    )

    def protocol_payload(self) -> dict[str, Any]:
        """The body of the upstream submit (what the job stores as its request)."""
        exclude = {"kind", "notify_email"}
        payload = self.model_dump(mode="json", exclude=exclude, exclude_unset=True)
        return {name: value for name, value in payload.items() if value is not None}


class DecomposeRequest(_Request):
    """Break a goal into steps (or ask what is unclear)."""

    kind: Literal["decompose"]
    description: Text
    library_agents: LibraryAgents | None = None


class GenerateRequest(_Request):
    """Build an agent from instructions: text (the goal) or an object with goal or steps."""

    kind: Literal["generate"]
    instructions: InstructionsField
    library_agents: LibraryAgents | None = None

    def protocol_payload(self) -> dict[str, Any]:
        payload = super().protocol_payload()
        if isinstance(self.instructions, str):  # the protocol's generate takes an object
            payload["instructions"] = {"goal": self.instructions}
        return payload


class UpdateRequest(_Request):
    """Change an existing agent as a request says."""

    kind: Literal["update"]
    update_request: Text
    current_agent_json: Annotated[AgentJson, BeforeValidator(_agent_sized)]
    library_agents: LibraryAgents | None = None


class CustomizeRequest(_Request):
    """Adapt a template agent as a request says."""

    kind: Literal["customize"]
    modification_request: Text
    template_agent_json: Annotated[AgentJson, BeforeValidator(_agent_sized)]
    library_agents: LibraryAgents | None = None


AnyJobRequest = DecomposeRequest | GenerateRequest | UpdateRequest | CustomizeRequest
#: A job request of any kind, told apart by ``kind`` (the API's body).
JobRequest = Annotated[AnyJobRequest, Field(discriminator="kind")]
_MODELS: dict[str, type[_Request]] = {
    Kind.DECOMPOSE: DecomposeRequest,
    Kind.GENERATE: GenerateRequest,
    Kind.UPDATE: UpdateRequest,
    Kind.CUSTOMIZE: CustomizeRequest,
}
_JOB_REQUEST: TypeAdapter[AnyJobRequest] = TypeAdapter(JobRequest)
#: Fields that are not the protocol's: ``kind``, then the portal's own (listed last).
_PORTAL_FIELDS = ("kind", "notify_email")
#: The tags of tagged unions below a field, which name no field of the request.
_FIELD_UNION_TAGS = {"instructions": {"text", "object"}}


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: Mapping[str, Any], *, kind: str | None) -> str:
    """One error's message, in the portal's words (the same at every door)."""
    kind_of, ctx, given = error["type"], error.get("ctx") or {}, error.get("input")
    if kind_of == "missing" or (kind_of == "string_too_short" and ctx.get("min_length") == 1):
        return "This field is required."
    if kind_of == "string_type":
        return "Must be text."
    if kind_of == "string_too_long":
        found = len(given.strip()) if isinstance(given, str) else 0
        return f"Must be at most {ctx['max_length']:,} characters (it has {found:,})."
    if kind_of == "too_long":
        found = ctx.get("actual_length") or 0
        return f"Must have at most {ctx['max_length']:,} items (it has {found:,})."
    if kind_of == "too_short":
        return "Must not be empty."
    if kind_of == "list_type":
        return "Must be a list."
    if kind_of in {"model_type", "dict_type", "model_attributes_type"}:
        return "Must be a JSON object."
    if kind_of == "extra_forbidden":
        names = _MODELS[kind].model_fields if kind else {}
        fields = [n for n in names if n not in _PORTAL_FIELDS] + [*_PORTAL_FIELDS[1:]]
        return f"Unknown field; {kind} takes {', '.join(fields)}." if kind else "Unknown field."
    if kind_of == "union_tag_invalid":
        return f"Unknown kind {ctx.get('tag')!r}; use one of {', '.join(Kind.values)}."
    if kind_of in {"int_type", "int_parsing", "int_from_float"}:
        return "Must be a whole number."
    return str(error["msg"])


def field_errors(errors: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """``{field: message}`` from pydantic's errors for :data:`JobRequest` (first per field).

    A nested error names its place in the field's value: ``"nodes[3].id: This field is
    required."`` for ``current_agent_json``. Errors about the whole request are ``kind``'s (no
    kind, or an unknown one) or ``body``'s (not an object).
    """
    found: dict[str, str] = {}
    for error in errors:
        loc = list(error["loc"])
        kind = str(loc.pop(0)) if loc and loc[0] in _MODELS else None
        if not loc:
            top = error["type"]
            field = "kind" if top.startswith("union_tag") else "body"
            message = _message(error, kind=kind)
            if field == "kind" and top == "union_tag_not_found":
                message = "This field is required."
            elif field == "body":
                message = 'Must be a JSON object: {"kind": …, …}.'
            found.setdefault(field, message)
            continue
        field = str(loc.pop(0))
        if loc and loc[0] in _FIELD_UNION_TAGS.get(field, ()):
            loc.pop(0)
        message = _message(error, kind=kind)
        found.setdefault(field, f"{_path(loc)}: {message}" if loc else message)
    return found


def job_request_clean(*, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Return the protocol payload for ``kind``, or raise InvalidJobRequest naming each field."""
    if not isinstance(payload, Mapping):
        raise InvalidJobRequest({"body": 'Must be a JSON object: {"kind": …, …}.'})
    try:
        request = _JOB_REQUEST.validate_python({**payload, "kind": kind})
    except ValidationError as exc:
        raise InvalidJobRequest(field_errors(exc.errors(include_url=False))) from None
    return request.protocol_payload()
