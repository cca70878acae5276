"""``manage.py runworker agent-generator``: a runner process for the scaled-out setup.

Channels' ``runworker`` (same arguments), serving the one channel this project has: the
runner channel, through :func:`copilot.runner.consumer.runner_serve`, as a web process's
embedded runner does. Unlike Channels' worker:

- the job runner starts at once (not on the first message), so the process scans for stale
  jobs from start-up on;
- a channel-layer outage (Redis restarting) does not end the process: the listener logs it
  and listens again a second later; the runner goes on polling meanwhile;
- SIGTERM and SIGINT stop the runner, which releases its leases and leaves its jobs
  resumable by the other runners, then the process exits with status 0;
- ``--metrics-port N`` serves the process's own figures for Prometheus (``/metrics`` on
  ``--metrics-addr``, 127.0.0.1 by default) with no token: keep that port on a private
  network. The jobs' database figures are the web's ``GET /metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from channels.layers import get_channel_layer
from channels.management.commands import runworker
from django.core.management.base import CommandError
from prometheus_client import start_http_server

from copilot.jobs.messaging import RUNNER_CHANNEL
from copilot.ops.startup import refuse_demo_login
from copilot.runner.consumer import runner_serve
from copilot.runner.runner import Runner
from copilot.runner.thread import loop_factory


class Command(runworker.Command):
    help = (
        f"Run the job runner, listening on the {RUNNER_CHANNEL!r} channel: it claims queued "
        "and stale jobs and follows them until SIGTERM."
    )

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--metrics-port",
            type=_port,
            default=None,
            help="serve this process's Prometheus metrics on this port (default: not served)",
        )
        parser.add_argument(
            "--metrics-addr",
            default="127.0.0.1",
            help="address the metrics port listens on (default: 127.0.0.1; no token asked)",
        )

    def handle(
        self,
        *args,
        layer: str,
        channels: list[str],
        metrics_port: int | None = None,
        metrics_addr: str = "127.0.0.1",
        **options,
    ) -> None:
        unknown = sorted(set(channels) - {RUNNER_CHANNEL})
        if unknown:
            raise CommandError(
                f"no consumer for channel(s) {', '.join(unknown)}; "
                f"this project has one channel: {RUNNER_CHANNEL}"
            )
        channel_layer = get_channel_layer(layer)
        if channel_layer is None:
            raise CommandError("You do not have any CHANNEL_LAYERS configured.")
        refuse_demo_login()  # ConfigError: one line from manage.py, exit status 1
        if metrics_port is not None:
            try:
                start_http_server(metrics_port, addr=metrics_addr)
            except (OSError, ValueError) as exc:  # in use, or a bad address
                raise CommandError(
                    f"cannot serve metrics on {metrics_addr}:{metrics_port}: {exc}"
                ) from None
        with asyncio.Runner(loop_factory=loop_factory()) as loop_runner:
            loop_runner.run(_serve(channel_layer=channel_layer))


async def _serve(*, channel_layer) -> None:
    runner = Runner()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.stop)
    await runner_serve(runner=runner, channel_layer=channel_layer)


def _port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return port
