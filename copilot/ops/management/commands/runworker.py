"""``manage.py runworker agent-generator``: a runner process for the scaled-out setup.

Channels' ``runworker``, with three changes:

- the job runner starts at once (not on the first message), so the process scans for stale
  jobs from start-up on;
- a channel-layer outage (Redis restarting) does not end the process: the listener logs it
  and listens again a second later — the runner goes on polling meanwhile, and the database
  still holds every job and event;
- SIGTERM stops the runner first, which releases its leases and leaves its jobs resumable by
  the other runners.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from channels.management.commands import runworker
from channels.worker import Worker

from copilot.jobs.messaging import RUNNER_CHANNEL
from copilot.runner.runner import start_in_process

logger = logging.getLogger(__name__)

LISTEN_RETRY_SECONDS = 1.0


class ResilientWorker(Worker):
    """A Channels worker whose listeners survive channel-layer errors."""

    async def listener(self, channel: str) -> None:
        while True:
            try:
                await super().listener(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("channel layer unavailable channel=%s: %s", channel, exc)
                await asyncio.sleep(LISTEN_RETRY_SECONDS)


class Command(runworker.Command):
    help = (
        "Run a Channels worker on the given channels. With the 'agent-generator' channel it "
        "also runs the job runner: it claims queued and stale jobs and follows them."
    )
    worker_class = ResilientWorker

    def handle(self, *args, **options):
        if RUNNER_CHANNEL in options.get("channels", []):
            runner = start_in_process()

            def on_sigterm(signum, frame):
                runner.stop()
                runner.stopped.wait(timeout=10)
                sys.exit(0)

            signal.signal(signal.SIGTERM, on_sigterm)
        return super().handle(*args, **options)
