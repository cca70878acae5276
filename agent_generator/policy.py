"""How often and how long the client polls: the policy, its backoff and ``Retry-After``.

All values are seconds. The defaults follow a 5-30 minute job on a service that may or
may not hold polls open (``?wait=N``, at most 25 s): the first polls come quickly, then
back off to one every ~30 s while nothing happens, and a status change starts over.
Tests and the benchmark shrink every value (``PollPolicy.scaled(factor=...)``).
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["Backoff", "PollPolicy", "jittered", "parse_retry_after"]


@dataclass(frozen=True, kw_only=True)
class PollPolicy:
    """Timing rules for following one job.

    - ``interval``: first wait between polls; doubles while the status stays the same.
    - ``max_interval``: the doubling stops here.
    - ``budget``: wall-clock seconds from the start of ``run()`` until ``PollTimeout``.
    - ``max_consecutive_errors``: transient failures in a row before giving up
      (one good answer resets the count).
    - ``max_wait``: longest ``?wait=`` asked of a long-polling service (protocol: <= 25).
    - ``jitter``: each wait is scaled by a random factor in ``[1 - jitter, 1 + jitter]``
      so that many jobs never poll in lockstep.
    - ``cancel_timeout``: bound on the best-effort ``DELETE`` sent on cancellation.
    """

    interval: float = 2.0
    max_interval: float = 30.0
    budget: float = 1800.0
    max_consecutive_errors: int = 5
    max_wait: float = 25.0
    jitter: float = 0.2
    cancel_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("interval", "max_interval", "budget", "cancel_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"PollPolicy.{name} must be a positive number, got {value!r}")
        if self.max_interval < self.interval:
            raise ValueError("PollPolicy.max_interval must be >= interval")
        if not 0 <= self.max_wait <= 25:
            raise ValueError("PollPolicy.max_wait must be between 0 and 25 seconds")
        if not 0 <= self.jitter < 1:
            raise ValueError("PollPolicy.jitter must be in [0, 1)")
        if self.max_consecutive_errors < 1:
            raise ValueError("PollPolicy.max_consecutive_errors must be >= 1")

    def scaled(self, *, factor: float) -> PollPolicy:
        """The same policy with every duration multiplied by ``factor`` (counts unchanged)."""
        return dataclasses.replace(
            self,
            interval=self.interval * factor,
            max_interval=self.max_interval * factor,
            budget=self.budget * factor,
            max_wait=self.max_wait * factor,
            cancel_timeout=self.cancel_timeout * factor,
        )


def jittered(*, seconds: float, jitter: float, rng: random.Random | None = None) -> float:
    """``seconds`` scaled by a random factor in ``[1 - jitter, 1 + jitter]``."""
    if jitter <= 0 or seconds <= 0:
        return max(seconds, 0.0)
    draw = (rng or random).uniform(1 - jitter, 1 + jitter)
    return seconds * draw


class Backoff:
    """The current poll interval: starts at ``policy.interval``, doubles up to the maximum.

    ``grow()`` after an answer that changed nothing (or a transient error), ``reset()``
    when the status changed. ``next_wait()`` is the current interval with jitter applied.
    """

    def __init__(self, *, policy: PollPolicy, rng: random.Random | None = None) -> None:
        self._policy = policy
        self._rng = rng
        self.current = policy.interval

    def reset(self) -> None:
        self.current = self._policy.interval

    def grow(self) -> None:
        self.current = min(self.current * 2, self._policy.max_interval)

    def next_wait(self) -> float:
        return jittered(seconds=self.current, jitter=self._policy.jitter, rng=self._rng)


def parse_retry_after(*, value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or ``None`` if absent or unusable.

    Accepts delay-seconds (``"3"``, also ``"1.5"``) and an HTTP date
    (``"Wed, 21 Oct 2026 07:28:00 GMT"``). A date in the past gives ``0.0``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)
