"""The portal's one exception tree.

    CopilotError
    ├── InvalidJobRequest     bad input for a job (``errors`` maps field -> message)
    ├── JobLimitReached       the user already has the maximum number of active jobs
    ├── JobNotFound           no such job, or not one the caller may see
    ├── IllegalTransition     a state change the job's current state does not allow
    ├── LeaseLost             a runner tried to write a job it no longer holds
    └── TokenExpired          an API key whose token's expiry has passed

Agent Generator failures have their own tree in :mod:`agent_generator.exceptions`; the runner
turns those into a job's ``error_type`` and ``error_message``.
"""

from __future__ import annotations


class CopilotError(Exception):
    """Base of every error the portal raises on purpose."""


class InvalidJobRequest(CopilotError):
    """The job's kind or payload is not acceptable; ``errors`` maps each field to a message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.errors.items()))


class JobLimitReached(CopilotError):
    """The user has as many active jobs as COPILOT_MAX_ACTIVE_JOBS_PER_USER allows."""


class JobNotFound(CopilotError):
    """No job with that id exists, or the caller may not see it."""


class IllegalTransition(CopilotError):
    """The job's current state does not allow the requested change."""

    def __init__(self, *, job_id: object, current: str, requested: str) -> None:
        self.job_id = job_id
        self.current = current
        self.requested = requested
        super().__init__(f"job {job_id} is {current}; it cannot become {requested}")


class LeaseLost(CopilotError):
    """A runner's lease on a job expired or was taken over; it must stop without writing."""


class TokenExpired(CopilotError):
    """The API key belongs to a token whose ``expires_at`` has passed."""
