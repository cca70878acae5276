"""Argument types shared by the operators' commands: each turns text into a value or says
in one line what is wrong (argparse prints it and exits with status 2... which Django's
``CommandParser`` turns into a ``CommandError``: one line, exit status 1)."""

from __future__ import annotations

import argparse
import re
import uuid
from datetime import timedelta

from copilot.jobs.models import GenerationJob

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``24h``, ``30d`` or ``2w``."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 24h or 30d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


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
