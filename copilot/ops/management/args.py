"""Argument types shared by the operators' commands: each turns text into a value or says
in one line what is wrong (argparse prints it and exits with status 2... which Django's
``CommandParser`` turns into a ``CommandError``: one line, exit status 1)."""

from __future__ import annotations

import argparse
import re
import uuid
from datetime import timedelta

from copilot.jobs.models import GenerationJob

_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
#: The longest duration taken: dates this far from now are still dates (and it is plenty).
MAX_DURATION = timedelta(days=36_500)


def duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``24h``, ``30d`` or ``2w`` (at most 36500d, about 100 years)."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 24h or 30d")
    digits = match.group(1).lstrip("0")[:20]  # 20 digits of seconds is already far too long
    seconds = int(digits or "0") * _SECONDS[match.group(2)]
    if seconds > MAX_DURATION.total_seconds():
        raise argparse.ArgumentTypeError(f"{text!r} is too long; the most is {MAX_DURATION.days}d")
    return timedelta(seconds=seconds)


def positive_duration(text: str) -> timedelta:
    """A :func:`duration` longer than zero."""
    value = duration(text)
    if not value:
        raise argparse.ArgumentTypeError(f"{text!r} is no time at all; give e.g. 90d")
    return value


def job_id(text: str) -> uuid.UUID:
    """A job id (a UUID)."""
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (a UUID)") from None


def _choices(text: str, *, allowed: list[str], what: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; "
            f"use one or more of {','.join(allowed)}"
        )
    return values


def statuses(text: str) -> list[str]:
    """A comma-separated list of job statuses."""
    return _choices(text, allowed=list(GenerationJob.Status.values), what="status")


def kinds(text: str) -> list[str]:
    """A comma-separated list of job kinds."""
    return _choices(text, allowed=list(GenerationJob.Kind.values), what="kind")


def kind(text: str) -> str:
    """One job kind."""
    (value,) = _choices(text, allowed=list(GenerationJob.Kind.values), what="kind")[:1]
    if "," in text:
        raise argparse.ArgumentTypeError("give one kind")
    return value
