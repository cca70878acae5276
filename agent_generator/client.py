"""The async client of the Agent Generator: submit a job, then follow it until it ends.

Use it as an async context manager; it owns one ``httpx.AsyncClient`` and no globals::

    async with AgentGeneratorClient(base_url="http://generator:8000") as client:
        result = await client.decompose_goal(
            description="Email me a summary of new GitHub issues every morning",
            idempotency_key=f"{job.pk}:{job.attempt}",
            on_update=save_progress,          # async, gets every JobUpdate
        )

Each of ``decompose_goal``, ``generate_agent``, ``update_agent`` and ``customize_template``
builds the payload and calls ``run()``, which submits (or resumes ``upstream_job_id``),
polls (``polling.follow_job``) and returns the validated result from ``results``.
Failures raise the exceptions of ``agent_generator.exceptions``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from agent_generator.answers import error_for_status, error_for_transport, json_body, retry_after_of
from agent_generator.exceptions import (
    Detached,
    InvalidResponse,
    JobCancelled,
    PollTimeout,
    TransientError,
)
from agent_generator.jobs import (
    STATUSES,
    JobUpdate,
    Operation,
    PollAnswer,
    parse_poll_answer,
    validate_job_id,
)
from agent_generator.operation_methods import OperationMethods
from agent_generator.policy import Backoff, PollPolicy
from agent_generator.polling import follow_job
from agent_generator.results import (
    Block,
    Health,
    Result,
    parse_blocks,
    parse_health,
)
from agent_generator.waiting import StopRequested, Waiter

__all__ = ["AgentGeneratorClient"]

logger = logging.getLogger(__name__)

WAIT_MARGIN = 5.0
"""Seconds kept between a poll's ``?wait=`` and the read timeout (halved for tiny timeouts)."""

UpdateCallback = Callable[[JobUpdate], Awaitable[None]]

RequestObserver = Callable[[str, str, float], None]
"""``on_request(operation, outcome, seconds)``: told of every HTTP request the client makes.

``operation`` is ``submit``, ``poll``, ``cancel``, ``health`` or ``blocks``; ``outcome`` is
``ok`` or the failure's ``error_type`` (``rate_limit``, ``timeout``, ``http_error``, ...);
``seconds`` is the request's own time. Each retry is a request of its own.
"""


class AgentGeneratorClient(OperationMethods):
    """Client of one Agent Generator service.

    ``timeout`` applies to every request (a number is used for connect, read, write and
    pool); the ``?wait=`` of a poll is kept below its read timeout. ``transport`` is for
    tests (``httpx.ASGITransport(app=...)``); ``policy`` sets the polling rules;
    ``on_request`` (a :data:`RequestObserver`) is told of each request, for metrics.
    """

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float | httpx.Timeout = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        policy: PollPolicy | None = None,
        on_request: RequestObserver | None = None,
    ) -> None:
        self.policy = policy or PollPolicy()
        self.on_request = on_request
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=self.timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "copilot-portal/agent-generator"},
            follow_redirects=False,
        )

    async def __aenter__(self) -> AgentGeneratorClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (``async with`` does it for you)."""
        await self._http.aclose()

    @property
    def wait_cap(self) -> float:
        """Longest ``?wait=`` this client asks: policy.max_wait, kept below the read timeout."""
        read = self.timeout.read
        if read is None:
            return self.policy.max_wait
        return max(min(self.policy.max_wait, read - min(WAIT_MARGIN, read / 2)), 0.0)

    # -- single requests -------------------------------------------------------------

    async def health(self) -> Health:
        """``GET /health`` (one request, not retried)."""
        response = await self._request("GET", "/health", what="health", operation="health")
        return parse_health(body=json_body(response=response, what="health"))

    async def get_blocks(self) -> list[Block]:
        """``GET /api/blocks``: the blocks the generator can build with (not retried)."""
        response = await self._request("GET", "/api/blocks", what="blocks", operation="blocks")
        return parse_blocks(body=json_body(response=response, what="blocks"))

    async def submit(
        self,
        *,
        operation: Operation,
        payload: Mapping[str, Any],
        idempotency_key: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> str:
        """Submit a job and return its validated ``job_id``.

        Transient failures are retried under the same ``Idempotency-Key`` (so the service
        answers with the job it already created), up to ``policy.max_consecutive_errors``.
        """
        waiter = Waiter(deadline=time.monotonic() + self.policy.budget)
        job_id, _ = await self._submit(
            operation=operation,
            payload=payload,
            idempotency_key=idempotency_key,
            extra_headers=extra_headers,
            waiter=waiter,
        )
        return job_id

    async def poll(self, *, job_id: str, wait: float | None = None) -> PollAnswer:
        """One ``GET /api/jobs/{job_id}[?wait=W]``, validated (no retry, no result parsing).

        ``wait`` is capped by ``wait_cap`` so that a held poll never outlives the read timeout.
        Raises a ``TransientError`` for 408/429/503/504 and network failures, ``JobNotFound``
        for 404, ``HTTPStatusError`` for other non-2xx, ``InvalidResponse`` for a bad body.
        """
        job_id = validate_job_id(job_id)
        wait = min(wait, self.wait_cap) if wait is not None else None
        params = {"wait": f"{wait:.3f}".rstrip("0").rstrip(".")} if wait and wait > 0 else None
        what = f"poll job {job_id}"
        response = await self._request(
            "GET",
            f"/api/jobs/{job_id}",
            what=what,
            operation="poll",
            params=params,
            not_found_is_job=True,
        )
        return parse_poll_answer(
            job_id=job_id,
            body=json_body(response=response, what=what),
            retry_after=retry_after_of(response=response),
        )

    async def cancel(self, *, job_id: str) -> bool:
        """Best-effort ``DELETE /api/jobs/{job_id}`` within ``policy.cancel_timeout``.

        True if the service accepted (2xx); False for 404, any error or a timeout. Never
        raises an ``AgentGeneratorError``.
        """
        job_id = validate_job_id(job_id)
        bound = self.policy.cancel_timeout
        started = time.monotonic()
        try:
            # httpx bounds each phase (connect, write, read); asyncio bounds the whole call.
            async with asyncio.timeout(bound):
                response = await self._http.delete(
                    f"/api/jobs/{job_id}", timeout=httpx.Timeout(bound)
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            logger.warning("agent generator cancel failed job_id=%s error=%r", job_id, exc)
            timed_out = isinstance(exc, TimeoutError | httpx.TimeoutException)
            self._observe("cancel", "timeout" if timed_out else "connection_error", started)
            return False
        accepted = response.is_success
        self._observe("cancel", "ok" if accepted else "http_error", started)
        logger.info("agent generator cancel job_id=%s status_code=%s", job_id, response.status_code)
        return accepted

    # -- the loop --------------------------------------------------------------------

    async def run(
        self,
        *,
        operation: Operation,
        payload: Mapping[str, Any],
        idempotency_key: str,
        upstream_job_id: str | None = None,
        on_update: UpdateCallback | None = None,
        budget: float | None = None,
        cancel: asyncio.Event | None = None,
        detach: asyncio.Event | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Result:
        """Submit (or resume) one job and follow it to its result.

        - ``upstream_job_id``: resume that job; nothing is submitted.
        - ``on_update``: awaited with ``JobUpdate(kind="submitted")`` before the first
          poll, then once per status or progress change.
        - ``budget``: wall-clock seconds for the whole run (default ``policy.budget``);
          when spent: best-effort DELETE, then ``PollTimeout``.
        - ``cancel`` set (or this task cancelled): best-effort DELETE, then
          ``JobCancelled`` (or ``CancelledError``).
        - ``detach`` set: stop at once, no DELETE, raise ``Detached(job_id=...)``.

        Returns what ``results`` documents for ``operation``.
        """
        operation = Operation(operation)
        waiter = Waiter(
            deadline=time.monotonic() + (self.policy.budget if budget is None else budget),
            cancel=cancel,
            detach=detach,
        )
        job_id: str | None = None
        try:
            if upstream_job_id is not None:
                job_id = validate_job_id(upstream_job_id)
                status = None
                logger.info("agent generator job resumed job_id=%s", job_id)
            else:
                job_id, status = await self._submit(
                    operation=operation,
                    payload=payload,
                    idempotency_key=idempotency_key,
                    extra_headers=extra_headers,
                    waiter=waiter,
                )
                if on_update is not None:
                    await on_update(JobUpdate(kind="submitted", job_id=job_id, status=status))
            return await follow_job(
                poll=self.poll,
                job_id=job_id,
                operation=operation,
                policy=self.policy,
                waiter=waiter,
                wait_cap=self.wait_cap,
                on_update=on_update,
                status=status,
            )
        except StopRequested as stop:
            if stop.reason == "detach":
                logger.info("agent generator job detached job_id=%s", job_id)
                message = f"stopped following job {job_id}" if job_id else "detached before submit"
                raise Detached(message, job_id=job_id) from None
            if job_id is None:
                raise JobCancelled("cancelled on request before the job was submitted") from None
            await self.cancel(job_id=job_id)
            raise JobCancelled(f"job {job_id} cancelled on request") from None
        except PollTimeout:
            if job_id is not None:
                await self.cancel(job_id=job_id)
            raise
        except asyncio.CancelledError:
            if job_id is not None:
                await self.cancel(job_id=job_id)
            raise

    # -- internals -------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        operation: str,
        not_found_is_job: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request; transport failures and non-2xx answers become client errors."""
        started = time.monotonic()
        try:
            response = await self._http.request(method, url, **kwargs)
        except (httpx.TransportError, ConnectionError) as exc:
            transient = error_for_transport(exc=exc, what=what)
            self._observe(operation, transient.error_type, started)
            raise transient from exc
        except asyncio.CancelledError:
            self._observe(operation, "cancelled", started)
            raise
        error = error_for_status(response=response, what=what, not_found_is_job=not_found_is_job)
        self._observe(operation, "ok" if error is None else error.error_type, started)
        if error is not None:
            raise error
        return response

    def _observe(self, operation: str, outcome: str, started: float) -> None:
        """Tell ``on_request`` of one request; an observer's failure only logs."""
        if self.on_request is None:
            return
        try:
            self.on_request(operation, outcome, time.monotonic() - started)
        except Exception:
            logger.exception("agent generator on_request failed operation=%s", operation)

    async def _submit_once(
        self,
        *,
        operation: Operation,
        payload: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> tuple[str, str]:
        what = f"submit {operation}"
        response = await self._request(
            "POST",
            operation.path,
            what=what,
            operation="submit",
            json=dict(payload),
            headers=dict(headers),
        )
        body = json_body(response=response, what=what)
        if not isinstance(body, dict):
            raise InvalidResponse(f"{what}: answer is not a JSON object")
        job_id = validate_job_id(body.get("job_id"))
        status = body.get("status", "queued")
        if status not in STATUSES:
            raise InvalidResponse(f"{what}: unknown status {status!r:.80}")
        return job_id, status

    async def _submit(
        self,
        *,
        operation: Operation,
        payload: Mapping[str, Any],
        idempotency_key: str,
        extra_headers: Mapping[str, str] | None,
        waiter: Waiter,
    ) -> tuple[str, str]:
        if not isinstance(idempotency_key, str) or not idempotency_key.strip():
            raise ValueError("idempotency_key must be a non-empty string")
        headers = {**(extra_headers or {}), "Idempotency-Key": idempotency_key}
        backoff = Backoff(policy=self.policy)
        errors = 0
        while True:
            waiter.check()
            try:
                job_id, status = await waiter.race(
                    self._submit_once(operation=operation, payload=payload, headers=headers),
                    stop_on_cancel=False,
                )
            except TransientError as exc:
                errors += 1
                logger.warning(
                    "agent generator submit failed operation=%s error_type=%s attempt=%s/%s",
                    operation,
                    exc.error_type,
                    errors,
                    self.policy.max_consecutive_errors,
                )
                if errors >= self.policy.max_consecutive_errors:
                    raise
                delay = backoff.next_wait()
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                if delay >= waiter.remaining():
                    raise PollTimeout(f"budget spent while submitting {operation}") from exc
                backoff.grow()
                await waiter.sleep(delay)
                continue
            logger.info(
                "agent generator job submitted operation=%s job_id=%s status=%s",
                operation,
                job_id,
                status,
            )
            return job_id, status
