"""One typed method per operation, on top of :meth:`AgentGeneratorClient.run`.

``decompose_goal``, ``generate_agent``, ``update_agent`` and ``customize_template`` build the
protocol's payload for their operation and narrow ``run()``'s result to the types that
operation may return (``docs/agent-generator-protocol.md``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from agent_generator.jobs import Operation
from agent_generator.results import (
    AgentResult,
    ClarifyingQuestions,
    DecomposeResult,
    Instructions,
    Result,
)


class OperationMethods:
    """Mixed into :class:`~agent_generator.client.AgentGeneratorClient`, which supplies run()."""

    if TYPE_CHECKING:
        run: Callable[..., Awaitable[Result]]

    async def decompose_goal(
        self,
        *,
        description: str,
        library_agents: Sequence[Mapping[str, Any]] | None = None,
        **run_kwargs: Any,
    ) -> DecomposeResult:
        """Decompose a goal into steps.

        Returns ``Instructions``, ``ClarifyingQuestions``, ``UnachievableGoal``,
        ``VagueGoal`` or ``DecomposeError``. ``run_kwargs`` are ``run()``'s keywords
        (``idempotency_key`` is required).
        """
        payload: dict[str, Any] = {"description": description}
        _add_library_agents(payload, library_agents)
        result = await self.run(operation=Operation.DECOMPOSE, payload=payload, **run_kwargs)
        return cast(DecomposeResult, result)

    async def generate_agent(
        self,
        *,
        instructions: Mapping[str, Any] | Instructions,
        library_agents: Sequence[Mapping[str, Any]] | None = None,
        **run_kwargs: Any,
    ) -> AgentResult | ClarifyingQuestions:
        """Build an agent from decomposed ``instructions`` (an ``Instructions`` or its dict).

        Returns ``AgentResult`` (or ``ClarifyingQuestions``, which the protocol names only
        for update and customize but is accepted here too).
        """
        if isinstance(instructions, Instructions):
            instructions = instructions.as_dict()
        payload: dict[str, Any] = {"instructions": dict(instructions)}
        _add_library_agents(payload, library_agents)
        result = await self.run(operation=Operation.GENERATE, payload=payload, **run_kwargs)
        return cast(AgentResult | ClarifyingQuestions, result)

    async def update_agent(
        self,
        *,
        update_request: str,
        current_agent_json: Mapping[str, Any],
        library_agents: Sequence[Mapping[str, Any]] | None = None,
        **run_kwargs: Any,
    ) -> AgentResult | ClarifyingQuestions:
        """Change ``current_agent_json`` as ``update_request`` asks.

        Returns ``AgentResult`` or ``ClarifyingQuestions``.
        """
        payload: dict[str, Any] = {
            "update_request": update_request,
            "current_agent_json": dict(current_agent_json),
        }
        _add_library_agents(payload, library_agents)
        result = await self.run(operation=Operation.UPDATE, payload=payload, **run_kwargs)
        return cast(AgentResult | ClarifyingQuestions, result)

    async def customize_template(
        self,
        *,
        template_agent_json: Mapping[str, Any],
        modification_request: str,
        **run_kwargs: Any,
    ) -> AgentResult | ClarifyingQuestions:
        """Modify a template agent as ``modification_request`` asks.

        Returns ``AgentResult`` or ``ClarifyingQuestions``.
        """
        payload = {
            "template_agent_json": dict(template_agent_json),
            "modification_request": modification_request,
        }
        result = await self.run(operation=Operation.CUSTOMIZE, payload=payload, **run_kwargs)
        return cast(AgentResult | ClarifyingQuestions, result)


def _add_library_agents(
    payload: dict[str, Any], library_agents: Sequence[Mapping[str, Any]] | None
) -> None:
    if library_agents is not None:
        payload["library_agents"] = [dict(agent) for agent in library_agents]
