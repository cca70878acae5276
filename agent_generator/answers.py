"""Turning raw httpx answers and httpx errors into the client's exceptions.

One place decides what is retried: 408/504 and timeouts (``RequestTimeout``), 429
(``RateLimited``), 503 (``ServiceUnavailable``), connection failures (``ConnectionFailed``).
Every other non-2xx is an ``HTTPStatusError``; a 404 on a job is ``JobNotFound``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from agent_generator.exceptions import (
    AgentGeneratorError,
    ConnectionFailed,
    HTTPStatusError,
    InvalidResponse,
    JobNotFound,
    RateLimited,
    RequestTimeout,
    ServiceUnavailable,
    TransientError,
)
from agent_generator.policy import parse_retry_after

__all__ = ["error_for_status", "error_for_transport", "json_body", "retry_after_of"]

_TRANSIENT_STATUS: dict[int, type[TransientError]] = {
    408: RequestTimeout,
    429: RateLimited,
    503: ServiceUnavailable,
    504: RequestTimeout,
}


def retry_after_of(*, response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds, or ``None``."""
    return parse_retry_after(value=response.headers.get("retry-after"))


def error_for_status(
    *, response: httpx.Response, what: str, not_found_is_job: bool = False
) -> AgentGeneratorError | None:
    """The error a non-2xx answer stands for (``None`` for 2xx); ``what`` names the request."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    transient = _TRANSIENT_STATUS.get(status)
    if transient is not None:
        return transient(
            f"{what}: HTTP {status}",
            retry_after=retry_after_of(response=response),
            status_code=status,
        )
    if status == 404 and not_found_is_job:
        return JobNotFound(f"{what}: the service does not know this job (HTTP 404)")
    detail = response.text[:200].strip() if response.content else ""
    message = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
    return HTTPStatusError(message, status_code=status)


def error_for_transport(
    *, exc: httpx.TransportError | ConnectionError, what: str
) -> TransientError:
    """The retried error a transport failure stands for (chain it with ``from exc``).

    Over a network httpx wraps every socket error; an in-process transport
    (``httpx.ASGITransport``) lets a ``ConnectionError`` from the app through as it is.
    """
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(f"{what}: request timed out ({type(exc).__name__})")
    return ConnectionFailed(f"{what}: connection failed ({type(exc).__name__}: {exc})")


def json_body(*, response: httpx.Response, what: str) -> Any:
    """The decoded JSON body, or ``InvalidResponse`` if it is not JSON."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidResponse(f"{what}: answer is not JSON") from exc
