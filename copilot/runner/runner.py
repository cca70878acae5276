"""The job runner: drives every job to exactly one end, through restarts and lost messages.

One :class:`Runner` per process follows up to ``COPILOT_RUNNER_CONCURRENCY`` jobs at once,
each as its own asyncio task around :meth:`AgentGeneratorClient.run`. The database row is the
truth and the channel layer only wakes things up:

- **claim**: a job is driven only under a lease (:mod:`copilot.jobs.leases`); every write names
  the lease owner, so a runner that lost its lease stops without writing (``LeaseLost``);
- **submit once**: the upstream job id is saved the moment the Agent Generator accepts the
  job, before the first poll; a job that has one is polled, never submitted again, and a
  submit retried under ``<job id>:<attempt>`` as ``Idempotency-Key`` starts nothing twice;
- **events**: each status change and progress step updates the row and appends a
  ``JobEvent`` in one transaction, and only then is published to the job's group;
- **scan**: on start and every half lease, the runner renews its leases in one UPDATE and
  claims jobs nobody holds (queued and never claimed, released, or whose lease expired), so
  a lost ``job.run`` message costs at most one scan; it also picks up cancel requests;
- **stop**: ``stop()`` (SIGTERM, interpreter exit) stops claiming, detaches every job
  without touching its upstream job, and releases the leases: the jobs stay resumable.

Where it runs (see the README): inside the web process when there is no shared channel layer
(:func:`start_in_process`, called from ``copilot.asgi``), in ``manage.py runworker
agent-generator`` processes with Redis (:class:`JobRunnerConsumer` is the Channels consumer
on that channel), and inside ``manage.py submit_job --wait`` for a one-off job.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from channels.consumer import AsyncConsumer
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from agent_generator import AgentGeneratorClient, JobUpdate, Operation
from agent_generator.exceptions import (
    AgentGeneratorError,
    Detached,
    JobCancelled,
    JobFailed,
    PollTimeout,
)
from copilot.jobs import leases, services
from copilot.jobs.exceptions import IllegalTransition, JobNotFound, LeaseLost
from copilot.jobs.messaging import event_publish
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.runner.upstream import client_create

logger = logging.getLogger(__name__)

Status = GenerationJob.Status
T = TypeVar("T")

#: Upstream statuses that mean "keep polling" (protocol); they are logged as they change.
UPSTREAM_ACTIVE = frozenset({"queued", "pending", "running"})

#: Jobs per HTTP client. On every request and every response httpcore looks at each pooled
#: connection (and, for each idle one, counts the idle ones again), so a pool's cost per poll
#: grows with its size squared; a client per 10 jobs halved the runner's CPU per poll against
#: 100 (bench/RESULTS.md). The clients share one TLS context (generator.ssl_context).
CLIENT_SHARD_SIZE = 10

#: How often a runner looks for cancel requests on the jobs it holds (one small query).
CANCEL_CHECK_SECONDS = 1.0


def runner_id() -> str:
    """A name for this runner that is unique across hosts, processes and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class _Held:
    """What the runner keeps for one job it drives."""

    __slots__ = ("cancel", "detach", "task")

    def __init__(self) -> None:
        self.cancel = asyncio.Event()
        self.detach = asyncio.Event()
        self.task: asyncio.Task | None = None


class Runner:
    """Drives jobs under leases; ``await runner.run()`` until ``runner.stop()``."""

    def __init__(
        self,
        *,
        owner: str | None = None,
        concurrency: int | None = None,
        lease_seconds: float | None = None,
        client_factory: Callable[[], AgentGeneratorClient] | None = None,
    ) -> None:
        self.owner = owner or runner_id()
        self.concurrency = concurrency or settings.COPILOT_RUNNER_CONCURRENCY
        self.lease_seconds = lease_seconds or settings.COPILOT_LEASE_SECONDS
        self._client_factory = client_factory or functools.partial(
            client_create, max_connections=min(self.concurrency, CLIENT_SHARD_SIZE)
        )
        self._held: dict[uuid.UUID, _Held] = {}
        # One thread would serialize every event write of the runner (the limit at 2,000
        # jobs in bench/runner_load.py); on PostgreSQL a few threads share the load.
        self._db_executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"runner-db-{n}")
            for n in range(_db_thread_count())
        ]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakes: asyncio.Queue[uuid.UUID] | None = None
        self._early_wakes: list[uuid.UUID] = []
        self._stopping = threading.Event()
        self._stop_event: asyncio.Event | None = None
        self._clients: list[AgentGeneratorClient] = []
        self.started = threading.Event()
        self.first_scan = threading.Event()
        self.first_claimed: list[uuid.UUID] = []
        self.wakes_received = 0
        self.stopped = threading.Event()

    # -- control, from any thread ----------------------------------------------------------

    def wake(self, job_id: uuid.UUID | str) -> None:
        """Ask the runner to claim and run ``job_id`` now (safe from any thread)."""
        job_id = uuid.UUID(str(job_id))
        self.wakes_received += 1
        loop = self._loop
        if loop is None or self._wakes is None:
            self._early_wakes.append(job_id)
            return
        with contextlib.suppress(RuntimeError):  # loop closed: the runner has stopped
            loop.call_soon_threadsafe(self._wakes.put_nowait, job_id)

    def stop(self) -> None:
        """Stop claiming, detach every job and release the leases (safe from any thread)."""
        self._stopping.set()
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    # -- the main loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`: scan, renew, watch for cancels and start woken jobs."""
        self._loop = asyncio.get_running_loop()
        self._wakes = asyncio.Queue()
        self._stop_event = asyncio.Event()
        if self._stopping.is_set():
            self._stop_event.set()
        for job_id in self._early_wakes:
            self._wakes.put_nowait(job_id)
        self._early_wakes.clear()
        logger.info("runner started owner=%s concurrency=%s", self.owner, self.concurrency)
        self.started.set()
        try:
            async with contextlib.AsyncExitStack() as clients:
                shards = -(-self.concurrency // CLIENT_SHARD_SIZE)
                self._clients = [
                    await clients.enter_async_context(self._client_factory()) for _ in range(shards)
                ]
                tasks = [
                    asyncio.create_task(self._scan_loop(), name="runner-scan"),
                    asyncio.create_task(self._cancel_loop(), name="runner-cancel-watch"),
                    asyncio.create_task(self._wake_loop(), name="runner-wakes"),
                ]
                await self._stop_event.wait()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self._detach_all()
        finally:
            released = await self._db(leases.leases_release, owner=self.owner)
            for executor in self._db_executors:
                await asyncio.get_running_loop().run_in_executor(executor, _connection_close)
            logger.info("runner stopped owner=%s released=%s", self.owner, released)
            for executor in self._db_executors:
                executor.shutdown(wait=True)
            self.stopped.set()

    async def run_until_done(self, *, job_id: uuid.UUID | str) -> None:
        """Run until ``job_id`` has ended (for ``submit_job --wait`` with no other runner)."""
        job_id = uuid.UUID(str(job_id))
        self.wake(job_id)
        runner_task = asyncio.create_task(self.run())
        try:
            while not runner_task.done():
                job = await self._db(GenerationJob.objects.only("status").get, pk=job_id)
                if job.is_terminal:
                    break
                await asyncio.wait({runner_task}, timeout=0.2)
        finally:
            self.stop()
            await runner_task

    async def follow(self, job_ids: list[uuid.UUID]) -> None:
        """Wait until this runner has let go of each of ``job_ids`` (ended, or lost)."""
        tasks = [e.task for j in job_ids if (e := self._held.get(j)) and e.task]
        if tasks:
            await asyncio.wait(tasks)

    async def _db(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on one of the runner's database threads (each has one connection).

        Calls about one job (``job_id=`` or ``pk=``) always go to the same thread, so a job's
        writes stay in order; the rest go to the first.
        """
        key = kwargs.get("job_id", kwargs.get("pk"))
        shard = key.int % len(self._db_executors) if isinstance(key, uuid.UUID) else 0
        return await asyncio.get_running_loop().run_in_executor(
            self._db_executors[shard], functools.partial(_db_call, fn, *args, **kwargs)
        )

    async def _scan_loop(self) -> None:
        interval = self.lease_seconds / 2
        while True:
            try:
                claimed = await self.scan()
                if not self.first_scan.is_set():
                    self.first_claimed = claimed
            except Exception:
                logger.exception("runner scan failed owner=%s", self.owner)
            self.first_scan.set()
            await asyncio.sleep(interval)

    async def scan(self) -> list[uuid.UUID]:
        """Renew held leases, let go of lost ones, and claim jobs nobody holds."""
        held = set(self._held)
        still = await self._db(
            leases.leases_renew, owner=self.owner, job_ids=held, lease_seconds=self.lease_seconds
        )
        for job_id in held - still:
            entry = self._held.get(job_id)
            if entry is not None and not entry.cancel.is_set():
                logger.warning("runner lost lease job=%s owner=%s", job_id, self.owner)
                entry.detach.set()
        if self._stopping.is_set():
            return []
        claimed = await self._db(
            leases.jobs_claim_stale,
            owner=self.owner,
            lease_seconds=self.lease_seconds,
            limit=self.concurrency - len(self._held),
        )
        for job_id in claimed:
            self._start(job_id)
        if claimed:
            logger.info("runner scan claimed=%s owner=%s", len(claimed), self.owner)
        return claimed

    async def _cancel_loop(self) -> None:
        interval = min(CANCEL_CHECK_SECONDS, self.lease_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            if not self._held:
                continue
            try:
                for job_id in await self._db(leases.cancel_requests, owner=self.owner):
                    entry = self._held.get(job_id)
                    if entry is not None:
                        entry.cancel.set()
            except Exception:
                logger.exception("runner cancel watch failed owner=%s", self.owner)

    async def _wake_loop(self) -> None:
        """Claim woken jobs: every wake that arrived while the last claim ran, in one UPDATE."""
        assert self._wakes is not None
        while True:
            woken = {await self._wakes.get()}
            while not self._wakes.empty():
                woken.add(self._wakes.get_nowait())
            if self._stopping.is_set():
                continue
            # When full, the rest wait for a later scan, which claims them as slots free up.
            room = self.concurrency - len(self._held)
            job_ids = [job_id for job_id in woken if job_id not in self._held][: max(room, 0)]
            if not job_ids:
                continue
            try:
                claimed = await self._db(
                    leases.jobs_claim,
                    job_ids=job_ids,
                    owner=self.owner,
                    lease_seconds=self.lease_seconds,
                )
            except Exception:
                logger.exception("runner claim failed jobs=%s", len(job_ids))
                continue
            for job_id in claimed:
                self._start(job_id)

    def _start(self, job_id: uuid.UUID) -> None:
        if job_id in self._held:
            return
        entry = self._held[job_id] = _Held()
        entry.task = asyncio.create_task(self._drive(job_id, entry), name=f"job-{job_id}")

    async def _detach_all(self) -> None:
        entries = list(self._held.values())
        for entry in entries:
            entry.detach.set()
        tasks = [e.task for e in entries if e.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- one job -----------------------------------------------------------------------

    async def _write(self, service: Callable[..., Any], **kwargs: Any) -> Any:
        """Call a lease-checked service on the DB thread, publish its event, return its answer."""
        answer = await self._db(service, lease_owner=self.owner, publish=False, **kwargs)
        event = answer[1] if isinstance(answer, tuple) else answer
        await event_publish(job_id=event.job_id, event=event.as_message())
        return answer

    async def _drive(self, job_id: uuid.UUID, entry: _Held) -> None:
        try:
            await self._drive_job(job_id, entry)
        except (LeaseLost, Detached):
            logger.info("runner let go job=%s owner=%s", job_id, self.owner)
        except JobNotFound:
            logger.warning("runner job vanished job=%s", job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("runner failed job=%s", job_id)
            await self._end(
                job_id,
                to=Status.FAILED,
                error_type="internal_error",
                error_message=f"The portal failed while following this job: {exc}",
            )
        finally:
            self._held.pop(job_id, None)
            if entry.detach.is_set() and not self._stopping.is_set():
                # Let go of a job we still hold but stopped following, so another scan
                # (ours included) picks it up.
                await self._db(leases.leases_release, owner=self.owner, job_ids=[job_id])

    async def _end(self, job_id: uuid.UUID, *, to: str, **fields: Any) -> None:
        try:
            await self._write(services.job_transition, job_id=job_id, to=to, **fields)
        except (LeaseLost, IllegalTransition) as exc:
            logger.info("runner end not written job=%s to=%s: %s", job_id, to, exc)

    async def _drive_job(self, job_id: uuid.UUID, entry: _Held) -> None:
        job = await self._db(GenerationJob.objects.get, pk=job_id)
        if job.is_terminal:
            return
        if job.cancel_requested_at is not None and not job.upstream_job_id:
            await self._end(
                job_id, to=Status.CANCELLED, error_type="cancelled", error_message="Cancelled."
            )
            return
        if job.cancel_requested_at is not None:
            entry.cancel.set()
        if job.status == Status.QUEUED:
            job, _ = await self._write(services.job_transition, job_id=job_id, to=Status.SUBMITTING)
        elapsed = (timezone.now() - (job.started_at or timezone.now())).total_seconds()
        remaining = settings.AGENT_GENERATOR_POLL_BUDGET - elapsed
        if remaining <= 0:
            await self._end(
                job_id,
                to=Status.TIMED_OUT,
                error_type="poll_timeout",
                error_message=_budget_message(),
            )
            return
        upstream_status: list[str | None] = [None]

        async def on_update(update: JobUpdate) -> None:
            if update.kind == "submitted":
                await self._write(
                    services.job_transition,
                    job_id=job_id,
                    to=Status.RUNNING,
                    upstream_job_id=update.job_id,
                    event_data={"upstream_job_id": update.job_id},
                )
            elif (
                update.kind == "status"
                and update.status in UPSTREAM_ACTIVE
                and update.status != upstream_status[0]
            ):
                # (An upstream end is not logged here: the job's own terminal event follows.)
                upstream_status[0] = update.status
                await self._write(
                    services.event_append,
                    job_id=job_id,
                    type=JobEvent.Type.STATUS,
                    data={
                        "status": Status.RUNNING,
                        "upstream_status": update.status,
                        "terminal": False,
                    },
                )
            elif update.kind == "progress":
                await self._write(
                    services.job_progress,
                    job_id=job_id,
                    percent=update.percent,
                    phase=update.phase,
                )

        client = self._clients[job_id.int % len(self._clients)]
        logger.info(
            "runner drives job=%s attempt=%s upstream=%s",
            job_id,
            job.attempt,
            job.upstream_job_id or "-",
        )
        try:
            result = await client.run(
                operation=Operation(job.kind),
                payload=job.request,
                idempotency_key=f"{job.id}:{job.attempt}",
                upstream_job_id=job.upstream_job_id or None,
                on_update=on_update,
                budget=remaining,
                cancel=entry.cancel,
                detach=entry.detach,
            )
        except JobCancelled as exc:
            await self._end(
                job_id, to=Status.CANCELLED, error_type=exc.error_type, error_message=str(exc)
            )
        except PollTimeout:
            await self._end(
                job_id,
                to=Status.TIMED_OUT,
                error_type="poll_timeout",
                error_message=_budget_message(),
            )
        except JobFailed as exc:
            await self._end(
                job_id,
                to=Status.FAILED,
                error_type=exc.error_type,
                error_message=str(exc),
                event_data={"upstream_error_type": exc.upstream_error_type},
            )
        except AgentGeneratorError as exc:
            await self._end(
                job_id, to=Status.FAILED, error_type=exc.error_type, error_message=str(exc)
            )
        else:
            await self._end(job_id, to=Status.COMPLETED, result=result.as_dict())


def _budget_message() -> str:
    minutes = settings.AGENT_GENERATOR_POLL_BUDGET / 60
    return f"The Agent Generator did not finish within {minutes:g} minutes."


def _db_call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run on the runner's DB thread; a broken connection is dropped so the next call reconnects."""
    try:
        return fn(*args, **kwargs)
    except DatabaseError:
        if connection.connection is not None and not connection.is_usable():
            connection.close()
        raise


def _db_thread_count() -> int:
    """PostgreSQL takes a runner's writes from several threads at once; SQLite, one writer."""
    return 4 if settings.DATABASES["default"]["ENGINE"].endswith("postgresql") else 1


def _connection_close() -> None:
    connection.close()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop the runner's thread runs on: uvloop's where it is installed.

    The runner spends most of its CPU in the event loop (thousands of open long-polls and
    their timeouts); uvloop does that part in C. None means asyncio's own loop.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# -- where the runner lives ------------------------------------------------------------

_local: Runner | None = None
_local_lock = threading.Lock()


def local_runner() -> Runner | None:
    """The runner started in this process, if any (wakes go straight to it)."""
    return _local


def start_in_process() -> Runner:
    """Start this process's runner in its own thread and event loop (idempotent).

    A thread of its own means the runner starts with the process, whatever server hosts the
    ASGI app (Daphne has no lifespan startup hook), and never competes with requests for the
    web server's event loop. On interpreter exit it releases its leases.
    """
    global _local
    with _local_lock:
        if _local is not None and not _local.stopped.is_set():
            return _local
        runner = Runner()

        def run() -> None:
            with asyncio.Runner(loop_factory=loop_factory()) as loop_runner:
                loop_runner.run(runner.run())

        thread = threading.Thread(target=run, name="copilot-runner", daemon=True)
        thread.start()
        _local = runner

    def stop_at_exit() -> None:
        runner.stop()
        runner.stopped.wait(timeout=10)

    # At interpreter exit (a server stopped by SIGTERM or Ctrl-C), stop before
    # concurrent.futures shuts its executors down -- the runner's database thread among them --
    # so that the leases are still released: threading's exit hooks run before atexit's, and
    # the latest registered first.
    register = getattr(threading, "_register_atexit", atexit.register)
    register(stop_at_exit)
    return runner


def set_local_runner(runner: Runner | None) -> None:
    """Make ``runner`` the one that in-process wakes go to (``submit_job --wait``, tests)."""
    global _local
    _local = runner


class JobRunnerConsumer(AsyncConsumer):
    """The Channels consumer on the ``agent-generator`` channel (``runworker``).

    A ``job.run`` message only wakes this process's runner, which claims the job through its
    lease and runs it as its own task: the handler returns at once, so messages never queue
    behind a whole job.
    """

    async def job_run(self, message: dict) -> None:
        try:
            job_id = uuid.UUID(str(message.get("job_id")))
        except ValueError:
            logger.warning("job.run with a bad job_id=%r ignored", message.get("job_id"))
            return
        runner = local_runner() or start_in_process()
        runner.wake(job_id)
