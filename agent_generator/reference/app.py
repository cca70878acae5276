"""The reference Agent Generator as a raw ASGI 3 application (no framework).

Routes are the protocol's endpoints (see ``docs/agent-generator-protocol.md``);
:class:`ReferenceApp` parses the request, calls the store, jobs and generator modules,
and answers JSON. Faults are described in the package docstring.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import httpx

from .asgi import (
    BodyTooLargeError,
    Disconnected,
    DisconnectWatcher,
    Receive,
    Request,
    Scope,
    Send,
    read_request,
    send_body,
    send_json,
)
from .catalogue import blocks_payload
from .faults import Faults, FaultSpecError, check_seconds, parse_faults
from .jobs import Job, Operation
from .limits import LimitExceededError
from .operations import Outcome, compute_outcome
from .settings import ReferenceSettings
from .store import Stats, open_store
from .validation import InvalidRequestError, validate_submit

__all__ = ["ReferenceApp", "create_app"]

logger = logging.getLogger(__name__)

JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
FAULT_HEADER = "x-reference-fault"
SUBMIT_ROUTES = {
    "/api/decompose-description": Operation.DECOMPOSE,
    "/api/generate-agent": Operation.GENERATE,
    "/api/update-agent": Operation.UPDATE,
    "/api/template-modification": Operation.CUSTOMIZE,
}
_JOB_PATH = re.compile(r"^/api/jobs/([^/]*)$")
_BAD_JOB_ID = "../../etc"


class ConnectionDroppedError(httpx.ReadError, ConnectionResetError):
    """The ``reset`` fault under a transport that cannot drop a connection (ASGITransport).

    It is an ``httpx.ReadError`` so an in-process client sees what a dropped connection
    gives it over a real socket.
    """

    def __init__(self, message: str) -> None:
        httpx.ReadError.__init__(self, message)


class ReferenceApp:
    """The ASGI callable. ``stats`` counts requests; :meth:`reset` forgets everything."""

    def __init__(self, *, settings: ReferenceSettings, expose_stats: bool = False) -> None:
        self.settings = settings
        self.stats = Stats()
        self.expose_stats = expose_stats
        self._base_faults = parse_faults(settings.faults)
        self._limits = settings.limits
        self._store = open_store(path=settings.store_path, ttl_seconds=settings.ttl_seconds)

    def reset(self) -> None:
        """Forget all jobs and idempotency keys (in the store file too), and zero the stats."""
        self._store.clear()
        self.stats.clear()

    def close(self) -> None:
        """Close the store file, if any (its jobs stay in it for the next instance)."""
        self._store.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        watcher = DisconnectWatcher(receive)
        try:
            request = await read_request(scope, receive, max_body=self._limits.body_bytes)
            status = await self._dispatch(request, send, watcher)
            logger.info("request method=%s path=%s status=%s", request.method, request.path, status)
        except BodyTooLargeError as exc:
            bound = self._limits.body_bytes
            refusal = LimitExceededError(
                limit="body_bytes", bound=bound, found=exc.declared, field="body"
            )
            logger.info("body refused path=%s limit=%s", scope.get("path"), bound)
            await send_json(send, status=400, data=refusal.as_json())
        except Disconnected:
            logger.info("client disconnected path=%s", scope.get("path"))
        finally:
            await watcher.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _dispatch(self, request: Request, send: Send, watcher: DisconnectWatcher) -> int:
        """Route ``request``; returns the status it answered (for the log)."""
        path, method = request.path, request.method
        if path in SUBMIT_ROUTES:
            if method != "POST":
                return await _method_not_allowed(send, "POST")
            return await self._submit(request, send, watcher, SUBMIT_ROUTES[path])
        if match := _JOB_PATH.match(path):
            if method == "GET":
                return await self._poll(request, send, watcher, match.group(1))
            if method == "DELETE":
                return await self._delete(send, match.group(1))
            return await _method_not_allowed(send, "GET, DELETE")
        simple = {
            "/api/blocks": blocks_payload,
            "/health": lambda: {"status": "healthy", "blocks_loaded": True},
        }
        if self.expose_stats:
            simple["/__stats"] = self.stats.as_json
        if path in simple:
            if method != "GET":
                return await _method_not_allowed(send, "GET")
            await send_json(send, status=200, data=simple[path]())
            return 200
        await send_json(send, status=404, data={"detail": "Not found."})
        return 404

    async def _submit(
        self, request: Request, send: Send, watcher: DisconnectWatcher, operation: Operation
    ) -> int:
        self.stats.submits += 1
        key = request.headers.get("idempotency-key") or None
        if key is not None:
            self.stats.submits_by_key[key] = self.stats.submits_by_key.get(key, 0) + 1
        spec = request.headers.get(FAULT_HEADER, "")
        try:
            check_seconds(parse_faults(spec), limit=self.settings.max_fault_seconds)
            faults = parse_faults(spec, base=self._base_faults)
        except FaultSpecError as exc:
            errors = {"X-Reference-Fault": str(exc)}
            data = {"detail": "Bad X-Reference-Fault header.", "errors": errors}
            await send_json(send, status=400, data=data)
            return 400
        if faults.submit_503 or faults.submit_429:
            attempt = self._store.fault_attempt(f"key:{key}" if key else f"spec:{spec}")
            if attempt <= faults.submit_503 + faults.submit_429:
                status = 503 if attempt <= faults.submit_503 else 429
                return await _injected_error(send, status, faults)
        try:
            payload = validate_submit(operation=operation, body=request.body, limits=self._limits)
        except (InvalidRequestError, LimitExceededError) as exc:
            await send_json(send, status=400, data=exc.as_json())
            return 400
        now = time.monotonic()
        self._store.prune(now=now)
        if key is not None and (existing := self._store.by_key(key)) is not None:
            return await _accepted(send, existing, now)
        try:
            # In a worker thread: the event loop (other requests, and the portal's own when
            # embedded) goes on while an agent is worked out.
            outcome = await asyncio.to_thread(
                compute_outcome,
                operation=operation,
                payload=payload,
                faults=faults,
                limits=self._limits,
            )
        except LimitExceededError as exc:
            await send_json(send, status=400, data=exc.as_json())
            return 400
        if key is not None and (existing := self._store.by_key(key)) is not None:
            # A submit with the same key was accepted while this one was worked out.
            return await _accepted(send, existing, time.monotonic())
        job = self._create_job(operation=operation, outcome=outcome, faults=faults, key=key)
        await watcher.sleep(faults.slow_submit)
        return await _accepted(send, job, time.monotonic())

    def _create_job(
        self, *, operation: Operation, outcome: Outcome, faults: Faults, key: str | None
    ) -> Job:
        duration = faults.duration if faults.duration is not None else self.settings.job_seconds
        job = Job(
            id=self._store.new_id(),
            operation=operation,
            created_at=time.monotonic(),
            duration=duration,
            faults=faults,
            result=outcome.result,
            idempotency_key=key,
        )
        if outcome.error_type is not None:
            job.fail_with(error_type=outcome.error_type, message=outcome.error)
        stored = self._store.add(job)
        if stored is job:
            self.stats.jobs_created += 1
            logger.info("job created id=%s operation=%s key=%s", job.id, operation, key)
        return stored  # another submit with the same key got there first: its job

    def _find(self, job_id: str) -> Job | None:
        self._store.prune(now=time.monotonic())
        return self._store.get(job_id) if JOB_ID_RE.fullmatch(job_id) else None

    async def _poll(
        self, request: Request, send: Send, watcher: DisconnectWatcher, job_id: str
    ) -> int:
        self.stats.polls += 1
        job = self._find(job_id)
        if job is None:
            await send_json(
                send, status=404, data={"detail": "Job not found (unknown or expired)."}
            )
            return 404
        try:
            wait = _wait_seconds(request.query.get("wait"))
        except ValueError as exc:
            errors = {"wait": str(exc)}
            await send_json(send, status=400, data={"detail": "Bad wait.", "errors": errors})
            return 400
        job.polls += 1
        faults = job.faults
        await watcher.sleep(faults.slow_poll)
        injected = ((503, faults.poll_503), (429, faults.poll_429), (504, faults.poll_504))
        limit = 0
        for status, count in injected:
            limit += count
            if job.polls <= limit:
                return await _injected_error(send, status, faults)
        if faults.expire:
            self._store.forget(job)
        if faults.reset:
            await _drop_connection(send)
            return 0  # no answer: the connection is gone
        if faults.malformed:
            body = b"<html><body>502 Bad Gateway</body></html>"
            await send_body(send, status=200, body=body, content_type="text/html")
            return 200
        if faults.unknown_status:
            await send_json(send, status=200, data={"job_id": job.id, "status": "exploded"})
            return 200
        if self.settings.long_poll and wait > 0:
            await _hold_until_change(job, watcher, min(wait, self.settings.max_wait_seconds))
        await send_json(send, status=200, data=job.as_json(time.monotonic()))
        return 200

    async def _delete(self, send: Send, job_id: str) -> int:
        self.stats.deletes += 1
        job = self._find(job_id)
        if job is None:
            await send_json(
                send, status=404, data={"detail": "Job not found (unknown or expired)."}
            )
            return 404
        if job.cancel(time.monotonic()):
            self._store.save(job)
            logger.info("job cancelled id=%s", job.id)
        await send_body(send, status=204)
        return 204


def _wait_seconds(raw: str | None) -> float:
    if raw is None or raw == "":
        return 0.0
    value = float(raw)  # ValueError for text
    if not 0 <= value < float("inf"):
        raise ValueError("must be a number of seconds >= 0")
    return value


async def _hold_until_change(job: Job, watcher: DisconnectWatcher, seconds: float) -> None:
    """Long-poll: return when the job's stage changes, it is cancelled, or time is up."""
    start = time.monotonic()
    deadline = start + seconds
    before = job.stage(start)
    loop = asyncio.get_running_loop()
    while True:
        now = time.monotonic()
        if before.terminal or job.stage(now) != before or now >= deadline:
            return
        next_change = job.next_change_at(now)
        until = deadline if next_change is None else min(deadline, next_change)
        waiter: asyncio.Future[None] = loop.create_future()
        job.waiters.add(waiter)
        try:
            # A timer may fire a hair early; the loop simply sleeps the rest.
            await watcher.sleep(max(until - now, 0.001), wake=waiter)
        finally:
            job.waiters.discard(waiter)


async def _accepted(send: Send, job: Job, now: float) -> int:
    job_id = _BAD_JOB_ID if job.faults.bad_job_id else job.id
    await send_json(send, status=202, data={"job_id": job_id, "status": job.stage(now).status})
    return 202


async def _injected_error(send: Send, status: int, faults: Faults) -> int:
    headers = []
    if faults.retry_after is not None and status in {429, 503}:
        headers.append(("retry-after", f"{faults.retry_after:g}"))
    detail = {429: "Too many requests.", 503: "Service unavailable.", 504: "Gateway timeout."}
    data = {"detail": f"{detail[status]} (injected by X-Reference-Fault)"}
    await send_json(send, status=status, data=data, headers=headers)
    return status


async def _method_not_allowed(send: Send, allow: str) -> int:
    data = {"detail": f"Method not allowed; use {allow}."}
    await send_json(send, status=405, data=data, headers=[("allow", allow)])
    return 405


async def _drop_connection(send: Send) -> None:
    """The ``reset`` fault: start a 200 answer, then drop the connection.

    Under Daphne the TCP connection is aborted (its ``send`` is bound to the Twisted
    request, which knows the transport), so the client reads a response that never comes.
    Raising instead would not do it: Daphne would try to answer 500 over the started
    response and stop reaping finished requests. Elsewhere (``httpx.ASGITransport``) it
    raises :class:`ConnectionDroppedError`.
    """
    await send({"type": "http.response.start", "status": 200, "headers": []})
    transport = _daphne_transport(send)
    if transport is None:
        raise ConnectionDroppedError("reference fault 'reset': connection dropped")
    transport.abortConnection()


def _daphne_transport(send: Send) -> Any:
    for bound in getattr(send, "args", ()):
        transport = getattr(getattr(bound, "channel", None), "transport", None)
        if hasattr(transport, "abortConnection"):
            return transport
    return None


def create_app(
    *, settings: ReferenceSettings | None = None, expose_stats: bool = False
) -> ReferenceApp:
    """A fresh reference service (its own jobs and stats) with ``settings``.

    ``expose_stats`` adds ``GET /__stats`` (the Stats as JSON); only ``__main__`` turns
    it on, with ``--expose-stats``, so live-server tests can read the counters.
    """
    return ReferenceApp(settings=settings or ReferenceSettings(), expose_stats=expose_stats)
