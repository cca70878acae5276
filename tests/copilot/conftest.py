"""Fixtures for the runner: a real reference Agent Generator, and runners that use it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

from agent_generator import AgentGeneratorClient, PollPolicy
from agent_generator.reference import ReferenceApp, ReferenceSettings, create_app
from copilot.runner.consumer import runner_serve
from copilot.runner.runner import Runner

FAST_POLICY = PollPolicy(interval=0.02, max_interval=0.1, max_consecutive_errors=5, budget=60)


def client_factory_for(
    app: ReferenceApp, *, policy: PollPolicy = FAST_POLICY
) -> Callable[[], AgentGeneratorClient]:
    def make() -> AgentGeneratorClient:
        return AgentGeneratorClient(
            base_url="http://reference.test",
            transport=httpx.ASGITransport(app=app),
            policy=policy,
        )

    return make


@pytest.fixture
def reference() -> ReferenceApp:
    """A reference Agent Generator whose jobs take about half a second."""
    return create_app(settings=ReferenceSettings(job_seconds=0.5))


@contextlib.asynccontextmanager
async def running(runner: Runner, *, listen: bool = True) -> AsyncIterator[Runner]:
    """Run ``runner`` in this event loop for the duration of the block, then stop it.

    With ``listen`` it takes its wake-ups from the runner channel, as every runner does
    (:func:`copilot.runner.consumer.runner_serve`); without, it finds jobs only by scanning.
    """
    layer = get_channel_layer() if listen else None
    task = asyncio.create_task(runner_serve(runner=runner, channel_layer=layer))
    try:
        await asyncio.to_thread(runner.started.wait, 5)
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 15)


def _close() -> None:
    connection.close()


@pytest.fixture
async def db_closer():
    """Close the connection of asgiref's shared sync thread after an async test."""
    yield
    await sync_to_async(_close)()
