"""The runner on the channel layer: ``job.run`` messages on the runner channel wake it.

:func:`runner_serve` is how every runner runs, wherever it lives (``runworker
agent-generator``, a web process's thread, ``submit_job --wait``, the tests): the runner, and
a Channels worker that hands each ``job.run`` on :data:`~copilot.jobs.messaging.RUNNER_CHANNEL`
to :meth:`Runner.wake`. Services reach it only through that channel
(:func:`copilot.jobs.messaging.runner_wake`), so nothing needs to know where it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from channels.consumer import AsyncConsumer
from channels.layers import BaseChannelLayer
from channels.routing import ChannelNameRouter
from channels.worker import Worker

from copilot.jobs.messaging import RUNNER_CHANNEL
from copilot.runner.runner import Runner

logger = logging.getLogger(__name__)

#: After a channel-layer error (Redis restarting), the listener tries again this much later.
LISTEN_RETRY_SECONDS = 1.0


class JobRunnerConsumer(AsyncConsumer):
    """The Channels consumer on the runner channel.

    A ``job.run`` message only wakes the runner, which claims the job through its lease and
    runs it as its own task: the handler returns at once, so messages never queue behind a
    whole job.
    """

    def __init__(self, *, runner: Runner) -> None:
        super().__init__()
        self.runner = runner

    async def job_run(self, message: dict) -> None:
        try:
            job_id = uuid.UUID(str(message.get("job_id")))
        except ValueError:
            logger.warning("job.run with a bad job_id=%r ignored", message.get("job_id"))
            return
        self.runner.wake(job_id)


class ResilientWorker(Worker):
    """A Channels worker whose listeners survive channel-layer errors: the listener logs the
    error and listens again a second later, while the runner goes on polling."""

    async def listener(self, channel: str) -> None:
        while True:
            try:
                await super().listener(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("channel layer unavailable channel=%s: %s", channel, exc)
                await asyncio.sleep(LISTEN_RETRY_SECONDS)


async def runner_serve(*, runner: Runner, channel_layer: BaseChannelLayer | None) -> None:
    """Run ``runner`` until it stops, woken by ``job.run`` on the runner channel.

    With no channel layer the runner still runs; it finds its jobs by scanning.
    """
    if channel_layer is None:
        await runner.run()
        return
    worker = ResilientWorker(
        application=ChannelNameRouter({RUNNER_CHANNEL: JobRunnerConsumer.as_asgi(runner=runner)}),
        channels=[RUNNER_CHANNEL],
        channel_layer=channel_layer,
    )
    listening = asyncio.create_task(worker.arun(), name="runner-listen")
    try:
        await runner.run()
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        consumers = [details["future"] for details in worker.application_instances.values()]
        for consumer in consumers:
            consumer.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
