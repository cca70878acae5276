"""Every way a call to the Agent Generator can fail, as one exception tree.

Each failure carries an ``error_type`` string from the protocol's table
(``docs/agent-generator-protocol.md``), which the portal stores and shows::

    Exception
    ├── AgentGeneratorError(message, *, error_type)     base of everything below
    │   ├── TransientError                              retried up to the error cap
    │   │   ├── RateLimited          rate_limit            429
    │   │   ├── ServiceUnavailable   service_unavailable   503
    │   │   ├── RequestTimeout       timeout               408, 504, request timeout
    │   │   └── ConnectionFailed     connection_error      cannot connect / connection lost
    │   ├── HTTPStatusError          http_error            any other non-2xx (.status_code)
    │   ├── InvalidResponse          invalid_response      the answer breaks the protocol
    │   ├── JobNotFound              job_not_found         poll answered 404
    │   ├── JobFailed                job_failed            service said ``failed``
    │   │                                                  (.upstream_error_type)
    │   ├── PollTimeout              poll_timeout          wall-clock budget spent
    │   └── JobCancelled             cancelled             cancelled by us or by the service
    └── Detached                     (no error_type)       we stopped following on request;
                                                           the upstream job is untouched

``Detached`` is deliberately *not* an ``AgentGeneratorError``: nothing failed, the job
keeps running upstream and can be resumed with ``run(upstream_job_id=...)``.

Errors raised because of an httpx exception chain it (``raise ... from exc``).
"""

from __future__ import annotations

__all__ = [
    "AgentGeneratorError",
    "ConnectionFailed",
    "Detached",
    "HTTPStatusError",
    "InvalidResponse",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "PollTimeout",
    "RateLimited",
    "RequestTimeout",
    "ServiceUnavailable",
    "TransientError",
]


class AgentGeneratorError(Exception):
    """Base of every failure talking to the Agent Generator.

    ``error_type`` defaults to the class attribute of the concrete class; pass it only to
    override (for example when re-creating an error from a stored ``error_type``).
    """

    error_type: str = "agent_generator_error"

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_type is not None:
            self.error_type = error_type

    def __str__(self) -> str:
        return self.message


class TransientError(AgentGeneratorError):
    """A failure worth retrying (429, 503, 408/504, timeouts, lost connections).

    ``retry_after`` is the service's ``Retry-After`` in seconds, when it sent one;
    ``status_code`` is the HTTP status when there was an answer at all.
    """

    error_type = "transient_error"

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, error_type=error_type)
        self.retry_after = retry_after
        self.status_code = status_code


class RateLimited(TransientError):
    """429 Too Many Requests, still failing after the retries."""

    error_type = "rate_limit"


class ServiceUnavailable(TransientError):
    """503 Service Unavailable, still failing after the retries."""

    error_type = "service_unavailable"


class RequestTimeout(TransientError):
    """408/504 or a request that timed out on our side, still failing after the retries."""

    error_type = "timeout"


class ConnectionFailed(TransientError):
    """Could not connect, or the connection broke, still failing after the retries."""

    error_type = "connection_error"


class HTTPStatusError(AgentGeneratorError):
    """A non-2xx answer that is not retried (400, 401, 409, 500, ...)."""

    error_type = "http_error"

    def __init__(self, message: str, *, status_code: int, error_type: str | None = None) -> None:
        super().__init__(message, error_type=error_type)
        self.status_code = status_code


class InvalidResponse(AgentGeneratorError):
    """The answer breaks the protocol: not JSON, bad ``job_id``, unknown status, bad result."""

    error_type = "invalid_response"


class JobNotFound(AgentGeneratorError):
    """The service does not know the job (404): it expired or never existed."""

    error_type = "job_not_found"


class JobFailed(AgentGeneratorError):
    """The service reported ``failed``; its ``error_type`` is kept in ``upstream_error_type``."""

    error_type = "job_failed"

    def __init__(
        self,
        message: str,
        *,
        upstream_error_type: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message, error_type=error_type)
        self.upstream_error_type = upstream_error_type


class PollTimeout(AgentGeneratorError):
    """The wall-clock polling budget ran out before the job ended."""

    error_type = "poll_timeout"


class JobCancelled(AgentGeneratorError):
    """The job was cancelled: by our ``cancel`` event, or by the service (status ``cancelled``)."""

    error_type = "cancelled"


class Detached(Exception):
    """Polling stopped because the caller asked to detach; no DELETE was sent.

    The upstream job is untouched; ``job_id`` (``None`` if submit had not answered yet)
    is what to pass as ``upstream_job_id`` to resume it.
    """

    def __init__(self, message: str = "detached", *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
