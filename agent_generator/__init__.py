"""Client of the Agent Generator service: submit a job, follow it, get a typed result.

Knows nothing of Django. The pieces, one concern each:

- ``client``: ``AgentGeneratorClient``, the async HTTP client and ``run()``.
- ``polling``: the loop that follows one job (backoff, long-poll, Retry-After).
- ``policy``: ``PollPolicy``, the timing rules; ``waiting``: interruptible waits.
- ``jobs``: ``Operation``, ``JobUpdate``, ``PollAnswer``, ``validate_job_id``.
- ``results``: the typed results per operation; ``exceptions``: the error tree.
- ``answers``: HTTP answers and httpx errors mapped to that tree.
- ``reference``: a reference Agent Generator service for tests, demos and benchmarks.

The wire contract is ``docs/agent-generator-protocol.md``.
"""

from agent_generator.client import AgentGeneratorClient
from agent_generator.jobs import JobUpdate, Operation, PollAnswer, validate_job_id
from agent_generator.policy import PollPolicy

__all__ = [
    "AgentGeneratorClient",
    "JobUpdate",
    "Operation",
    "PollAnswer",
    "PollPolicy",
    "validate_job_id",
]
