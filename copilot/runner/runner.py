"""The job runner: leases jobs and drives each to exactly one end, through restarts and lost
messages.

One :class:`Runner` per process follows up to ``COPILOT_RUNNER_CONCURRENCY`` jobs at once,
each as its own asyncio task (:class:`~copilot.runner.drive.JobDrive`). The database row is
the truth and the channel layer only wakes things up:

- **heartbeat**: once a second the runner renews its heartbeat row in ONE UPDATE, whatever
  the number of jobs it holds; its jobs are its own while that row is fresh
  (``COPILOT_RUNNER_DEAD_SECONDS``);
- **claim**: a job is driven only under a lease (:mod:`copilot.jobs.leases`); every write
  is fenced by ``lease_owner = me``, so a runner whose job was taken over (it was slow, or
  paused) stops without writing;
- **wake**: ``job.run`` on the runner channel (:mod:`copilot.runner.consumer` hands it to
  :meth:`Runner.wake`) claims the job at once; every wake queued during a claim is claimed in
  one UPDATE;
- **scan**: on start and after each heartbeat, one SELECT looks for jobs no live runner
  holds (queued and never claimed, released, or whose runner died) and claims them; a lost
  ``job.run`` message costs at most one scan. A heartbeat that had gone stale (a long
  pause) makes the runner check which jobs it still holds and let go of the others;
- **cancel watch**: once a second, one small query finds cancel requests on held jobs;
- **stop**: ``stop()`` (SIGTERM, interpreter exit) stops claiming, detaches every job
  without touching its upstream job, releases the leases and deletes its heartbeat: the
  jobs stay resumable, at once;
- **database outage** (a PostgreSQL restart or failover, SQLite locked past its busy
  timeout; :mod:`copilot.runner.outage`): scans, the cancel watch and claims log it once and
  try again at their next turn; a job's writes wait for the database while the lease holds
  (:mod:`copilot.runner.drive`). A claim whose answer was lost, or a job whose drive gave up,
  is still leased to this runner: the next held check finds such jobs and resumes them. The
  process never exits because of it.

Where it runs: :mod:`copilot.runner.thread` (a web process, ``submit_job --wait``) and
``manage.py runworker agent-generator``; both through
:func:`copilot.runner.consumer.runner_serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError

from agent_generator import AgentGeneratorClient
from agent_generator.exceptions import Detached
from copilot.jobs import leases, transitions
from copilot.jobs.db_errors import is_outage
from copilot.jobs.exceptions import JobNotFound, LeaseLost
from copilot.jobs.metrics import RUNNER_JOBS_HELD, RUNNER_UP
from copilot.jobs.models import GenerationJob
from copilot.runner.database import DatabaseThreads
from copilot.runner.drive import JobDrive
from copilot.runner.outage import retrying
from copilot.runner.upstream import client_create

logger = logging.getLogger(__name__)

#: Jobs per HTTP client. On every request and every response httpcore looks at each pooled
#: connection (and, for each idle one, counts the idle ones again), so a pool's cost per poll
#: grows with its size squared; a client per 10 jobs halved the runner's CPU per poll against
#: 100 (bench/RESULTS.md). The clients share one TLS context (upstream.ssl_context).
CLIENT_SHARD_SIZE = 10

#: How often a runner looks for cancel requests on the jobs it holds (one small query).
CANCEL_CHECK_SECONDS = 1.0

#: How often a runner renews its heartbeat and scans for claimable jobs (shorter when the
#: dead interval is short, so a live runner is never taken for dead).
BEAT_SECONDS = 1.0

#: Every this many beats the runner checks that it still holds its jobs even when its
#: heartbeat stayed fresh (a peer whose clock runs ahead may have taken one over).
HELD_CHECK_BEATS = 5


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
        client_factory: Callable[[], AgentGeneratorClient] | None = None,
        db_threads: int | None = None,
    ) -> None:
        self.owner = owner or runner_id()
        self.concurrency = concurrency or settings.COPILOT_RUNNER_CONCURRENCY
        self.beat_seconds = min(BEAT_SECONDS, settings.COPILOT_RUNNER_DEAD_SECONDS / 4)
        self._client_factory = client_factory or functools.partial(
            client_create, max_connections=min(self.concurrency, CLIENT_SHARD_SIZE)
        )
        self._db_threads = db_threads
        self._held: dict[uuid.UUID, _Held] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakes: asyncio.Queue[uuid.UUID] | None = None
        self._early_wakes: list[uuid.UUID] = []
        self._stopping = threading.Event()
        self._stop_event: asyncio.Event | None = None
        self._clients: list[AgentGeneratorClient] = []
        self._db: DatabaseThreads | None = None
        self.started = threading.Event()
        self.first_scan = threading.Event()
        self.first_claimed: list[uuid.UUID] = []
        self.wakes_received = 0
        #: Beats that found this runner's own heartbeat stale (it had been paused).
        self.stale_beats = 0
        #: ``time.monotonic()`` when the last renewed heartbeat was sent: the leases hold
        #: until COPILOT_RUNNER_DEAD_SECONDS after it.
        self._beat_sent_at = time.monotonic()
        #: Set when a job may be leased to this runner without being followed (a claim's
        #: answer lost in an outage, a drive that gave up): the next scan looks.
        self._recheck = False
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

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the runner runs on, once started."""
        return self._loop

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
        db = self._db = DatabaseThreads(count=self._db_threads, who=f"owner={self.owner}")
        logger.info("runner started owner=%s concurrency=%s", self.owner, self.concurrency)
        self.started.set()
        RUNNER_UP.inc()
        try:
            async with contextlib.AsyncExitStack() as clients:
                shards = -(-self.concurrency // CLIENT_SHARD_SIZE)
                self._clients = [
                    await clients.enter_async_context(self._client_factory()) for _ in range(shards)
                ]
                # Alive before any claim, so no peer takes this runner's first jobs for a
                # dead runner's (waiting for the database, if it is away).
                if not await self._first_beat():
                    return
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
            RUNNER_UP.dec()
            released: int | str = "none (database unavailable)"
            try:
                released = await db.call(None, leases.leases_release, owner=self.owner)
                await db.call(None, leases.heartbeat_forget, owner=self.owner)
            except DatabaseError as exc:
                if not is_outage(exc):
                    raise
                # Its jobs are taken over once its heartbeat is COPILOT_RUNNER_DEAD_SECONDS old.
            finally:
                await db.aclose()
                logger.info("runner stopped owner=%s released=%s", self.owner, released)
                self.stopped.set()

    async def _first_beat(self) -> bool:
        """The first heartbeat, retried while the database is away; False if stopped first."""
        assert self._db is not None and self._stop_event is not None
        stop = self._stop_event

        def give_up() -> None:
            if stop.is_set():
                raise _Stopped

        started = time.monotonic()
        try:
            await retrying(
                functools.partial(self._db.call, None, leases.heartbeat_beat, owner=self.owner),
                give_up=give_up,
                interrupt=stop,
                outage=self._db.outage,
            )
        except _Stopped:
            return False
        self._beat_sent_at = started
        return True

    def lease_left(self) -> float:
        """Seconds until a peer may take this runner's jobs, if no heartbeat is renewed."""
        return self._beat_sent_at + settings.COPILOT_RUNNER_DEAD_SECONDS - time.monotonic()

    async def follow(self, job_ids: list[uuid.UUID]) -> None:
        """Wait until this runner has let go of each of ``job_ids`` (ended, or lost)."""
        tasks = [e.task for j in job_ids if (e := self._held.get(j)) and e.task]
        if tasks:
            await asyncio.wait(tasks)

    @property
    def db(self) -> DatabaseThreads:
        assert self._db is not None, "the runner is not running"
        return self._db

    async def _scan_loop(self) -> None:
        beats = 0
        while True:
            try:
                claimed = await self.scan(check_held=beats % HELD_CHECK_BEATS == 0)
                if not self.first_scan.is_set():
                    self.first_claimed = claimed
            except Exception as exc:
                if not is_outage(exc):
                    logger.exception("runner scan failed owner=%s", self.owner)
                # (an outage is logged once by the database threads; a claim may have
                # been stored without its answer)
                self._recheck = True
            self.first_scan.set()
            beats += 1
            await asyncio.sleep(self.beat_seconds)

    async def scan(self, *, check_held: bool = True) -> list[uuid.UUID]:
        """Renew the heartbeat, let go of jobs taken over, and claim jobs no live runner holds.

        Idle, this is one UPDATE (the heartbeat) and two SELECTs (the peers' heartbeats, the
        claimable jobs), plus one every ``HELD_CHECK_BEATS`` (the jobs it still holds).
        """
        sent_at = time.monotonic()
        fresh = await self.db.call(None, leases.heartbeat_beat, owner=self.owner)
        self._beat_sent_at = sent_at
        if not fresh and self.first_scan.is_set():
            self.stale_beats += 1
            logger.warning("runner heartbeat was stale owner=%s", self.owner)
        recheck, self._recheck = self._recheck, False
        if (check_held or not fresh or recheck) and (self._held or recheck):
            await self._check_held()
        if self._stopping.is_set():
            return []
        await self.db.call(None, leases.dead_peers_forget, owner=self.owner)
        claimed = await self.db.call(
            None,
            leases.jobs_claim_stale,
            owner=self.owner,
            limit=self.concurrency - len(self._held),
        )
        for job_id in claimed:
            self._start(job_id)
        if claimed:
            logger.info("runner scan claimed=%s owner=%s", len(claimed), self.owner)
        return claimed

    async def _check_held(self) -> None:
        """Let go of the jobs taken over; resume those leased to this runner that it does not
        follow (a claim whose answer an outage lost, a drive that gave up waiting)."""
        held = set(self._held)
        try:
            mine = await self.db.call(None, leases.leases_mine, owner=self.owner)
        except BaseException:
            self._recheck = True
            raise
        for job_id in held - mine:
            entry = self._held.get(job_id)
            if entry is not None and not entry.cancel.is_set():
                logger.warning("runner lost lease job=%s owner=%s", job_id, self.owner)
                entry.detach.set()
        if self._stopping.is_set():
            return
        for job_id in mine - held:
            if job_id not in self._held:
                logger.info("runner resumes job=%s owner=%s", job_id, self.owner)
                self._start(job_id)

    async def _cancel_loop(self) -> None:
        interval = CANCEL_CHECK_SECONDS
        while True:
            await asyncio.sleep(interval)
            if not self._held:
                continue
            try:
                for job_id in await self.db.call(None, leases.cancel_requests, owner=self.owner):
                    entry = self._held.get(job_id)
                    if entry is not None:
                        entry.cancel.set()
            except Exception as exc:
                if not is_outage(exc):  # (an outage is logged once by the database threads)
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
                claimed = await self.db.call(
                    None,
                    leases.jobs_claim,
                    job_ids=job_ids,
                    owner=self.owner,
                )
            except Exception as exc:
                if is_outage(exc):
                    self._recheck = True  # the claim may be stored; a scan claims the rest
                else:
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

    async def _drive(self, job_id: uuid.UUID, entry: _Held) -> None:
        RUNNER_JOBS_HELD.inc()  # no await before the try: dec'd in its finally
        drive = JobDrive(
            job_id=job_id,
            owner=self.owner,
            db=self.db,
            client=self._clients[job_id.int % len(self._clients)],
            cancel=entry.cancel,
            detach=entry.detach,
            lease_left=self.lease_left,
        )
        try:
            await drive.run()
        except (LeaseLost, Detached) as exc:
            logger.info("runner let go job=%s owner=%s: %s", job_id, self.owner, exc)
            self._recheck = True  # still leased to us, maybe (see _check_held)
        except (JobNotFound, GenerationJob.DoesNotExist):
            logger.warning("runner job vanished job=%s", job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_outage(exc):
                # Not the job's failure: it stays leased to us and is resumed (_check_held).
                logger.info(
                    "runner let go job=%s owner=%s: database unavailable", job_id, self.owner
                )
                self._recheck = True
            else:
                logger.exception("runner failed job=%s", job_id)
                if drive.job is not None:
                    await drive.end(transitions.job_fail, **failure_fields(exc))
        finally:
            self._held.pop(job_id, None)
            RUNNER_JOBS_HELD.dec()
            if entry.detach.is_set() and not self._stopping.is_set():
                # Let go of a job we still hold but stopped following, so another scan
                # (ours included) picks it up.
                await self._release(job_id)

    async def _release(self, job_id: uuid.UUID) -> None:
        try:
            await self.db.call(None, leases.leases_release, owner=self.owner, job_ids=[job_id])
        except DatabaseError as exc:
            if not is_outage(exc):
                raise
            self._recheck = True  # still ours: resumed by a later scan


class _Stopped(Exception):
    """The runner was stopped while it waited for the database."""


def failure_fields(exc: Exception) -> dict[str, str]:
    """How a job fails on an error of the portal's own: ``portal_error`` when the database
    refused the write itself (a constraint, bad data, a query's bug), else ``internal_error``."""
    if isinstance(exc, DatabaseError):
        return {
            "error_type": "portal_error",
            "error_message": f"The portal's database refused a write for this job: {exc}",
        }
    return {
        "error_type": "internal_error",
        "error_message": f"The portal failed while following this job: {exc}",
    }
