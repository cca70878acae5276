"""A runner in a thread of its own: the web process's embedded runner, ``submit_job --wait``.

A thread of its own means the runner starts with the process, whatever server hosts the ASGI
app (Daphne has no lifespan start-up hook), and never competes with requests for the web
server's event loop. It runs :func:`~copilot.runner.consumer.runner_serve` like ``runworker``
does, so its wake-ups come on the runner channel: the embedded channel layer delivers across
threads.

At interpreter exit (a server stopped by SIGTERM or Ctrl-C) an ``atexit`` handler stops the
runner, which releases its leases. ``atexit`` handlers run after ``threading`` has joined the
non-daemon threads and ``concurrent.futures`` has closed its pools to new work; the runner's
thread is a daemon thread and its database threads are plain threads
(:mod:`copilot.runner.database`), so both still run then and the release gets written
(``tests/copilot/runner/test_thread.py`` exits a process that holds a lease and checks).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable

from channels.layers import get_channel_layer

from copilot.runner.consumer import runner_serve
from copilot.runner.runner import Runner

#: How long a stop waits for the runner to detach its jobs and release their leases.
STOP_TIMEOUT_SECONDS = 10.0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop a runner's thread runs on: uvloop's where it is installed.

    The runner spends most of its CPU in the event loop (thousands of open long-polls and
    their timeouts); uvloop does that part in C; at 2,000 jobs it cut the loop's lag p99 from
    0.9 s to 0.09 s (bench/RESULTS.md). None means asyncio's own loop.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class RunnerThread:
    """``RunnerThread(runner).start()`` runs ``runner`` until :meth:`stop` or process exit."""

    def __init__(self, runner: Runner | None = None) -> None:
        self.runner = runner or Runner()
        self._thread: threading.Thread | None = None

    def start(self) -> RunnerThread:
        # The layer is created here, in the starting thread: two threads creating the default
        # layer at once could each build one, and wakes sent to one never reach the other.
        layer = get_channel_layer()

        def run() -> None:
            with asyncio.Runner(loop_factory=loop_factory()) as loop_runner:
                loop_runner.run(runner_serve(runner=self.runner, channel_layer=layer))

        self._thread = threading.Thread(target=run, name="copilot-runner", daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        return self

    def ping(self) -> concurrent.futures.Future[bool]:
        """Whether the runner is alive, for a readiness probe (safe from any thread).

        The future gets True once the runner's event loop has run a callback (so wait for it
        with a timeout: a blocked loop never answers), and False at once when the thread is
        not running or the runner has not started or has stopped.
        """
        answer: concurrent.futures.Future[bool] = concurrent.futures.Future()
        loop = self.runner.loop
        thread = self._thread
        if thread is None or not thread.is_alive() or loop is None or self.runner.stopped.is_set():
            answer.set_result(False)
            return answer

        def pong() -> None:
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # gave up waiting
                answer.set_result(True)

        try:
            loop.call_soon_threadsafe(pong)
        except RuntimeError:  # the loop has closed
            answer.set_result(False)
        return answer

    def stop(self, *, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        """Stop the runner and wait for its leases to be released; False if it took longer."""
        atexit.unregister(self.stop)
        self.runner.stop()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()
