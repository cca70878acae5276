"""``manage.py runworker agent-generator``: a runner process for the scaled-out setup.

Channels' ``runworker``, plus the job runner started at once (not on the first message), so
the process scans for stale jobs from start-up on, and a SIGTERM handler so that stopping
the process releases its leases and leaves its jobs resumable by the other runners.
"""

from __future__ import annotations

import signal
import sys

from channels.management.commands import runworker

from copilot.broadcast import RUNNER_CHANNEL
from copilot.runner import start_in_process


class Command(runworker.Command):
    help = (
        "Run a Channels worker on the given channels. With the 'agent-generator' channel it "
        "also runs the job runner: it claims queued and stale jobs and follows them."
    )

    def handle(self, *args, **options):
        if RUNNER_CHANNEL in options.get("channels", []):
            runner = start_in_process()

            def on_sigterm(signum, frame):
                runner.stop()
                runner.stopped.wait(timeout=10)
                sys.exit(0)

            signal.signal(signal.SIGTERM, on_sigterm)
        return super().handle(*args, **options)
