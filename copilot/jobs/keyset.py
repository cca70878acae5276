"""Keyset pages of jobs: newest first on ``(created_at DESC, id DESC)``, at any depth.

An OFFSET page reads and throws away every row before it, so page 10,000 of a million jobs
is as slow as a full scan. A keyset page starts where the last one ended: "older than
(created_at, id)" is a range of the ``(…, created_at, id)`` indexes, read for 51 rows
whatever the depth. Equal ``created_at`` values are told apart by ``id``, so no job is
missed or shown twice, and jobs created meanwhile only ever appear on newer pages.

A :class:`Cursor` travels in URLs as an opaque token (base64url of the key and direction);
:func:`cursor_decode` refuses anything it did not make with :class:`InvalidCursor`.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from copilot.jobs.models import GenerationJob

#: The longest cursor taken (a made one is about 70 characters).
MAX_CURSOR_CHARS = 200
CURSOR_MESSAGE = "Not a cursor from this list; follow a `next` link or leave it out."
OLDER, NEWER = "o", "n"


class InvalidCursor(ValueError):
    """A cursor that this module did not make (or that was changed)."""


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: the jobs older (or newer) than the job ``(created_at, id)``."""

    created_at: datetime
    id: uuid.UUID
    direction: str = OLDER

    def encode(self) -> str:
        text = f"{self.direction}|{self.created_at.isoformat()}|{self.id.hex}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def after(cls, job: GenerationJob, *, direction: str) -> Cursor:
        return cls(created_at=job.created_at, id=job.id, direction=direction)


def cursor_decode(text: str) -> Cursor:
    """The cursor ``text`` stands for; :class:`InvalidCursor` for anything else."""
    if not text or len(text) > MAX_CURSOR_CHARS:
        raise InvalidCursor(CURSOR_MESSAGE)
    try:
        padded = text + "=" * (-len(text) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
        direction, when, job_id = raw.split("|")
        created_at = datetime.fromisoformat(when)
        key = uuid.UUID(hex=job_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(CURSOR_MESSAGE) from None
    if direction not in (OLDER, NEWER) or created_at.tzinfo is None or len(job_id) != 32:
        raise InvalidCursor(CURSOR_MESSAGE)
    return Cursor(created_at=created_at, id=key, direction=direction)


@dataclass(frozen=True)
class KeysetPage:
    """A page of jobs, newest first, and the cursors of its neighbours (None: no such page)."""

    jobs: list[GenerationJob]
    older: Cursor | None
    newer: Cursor | None


def _older_than(cursor: Cursor) -> Q:
    # "created_at <= c" first so the index range is bounded; the OR only breaks ties.
    at = cursor.created_at
    return Q(created_at__lte=at) & (Q(created_at__lt=at) | Q(id__lt=cursor.id))


def newer_than(*, created_at: datetime, job_id: uuid.UUID) -> Q:
    """Jobs after ``(created_at, job_id)`` in ``(created_at, id)`` order (also pruning's walk)."""
    # "created_at >= c" first so the index range is bounded; the OR only breaks ties.
    at = created_at
    return Q(created_at__gte=at) & (Q(created_at__gt=at) | Q(id__gt=job_id))


def jobs_keyset_page(*, jobs: QuerySet, cursor: Cursor | None, size: int) -> KeysetPage:
    """One page of ``jobs`` (already filtered) of at most ``size``, starting at ``cursor``."""
    if cursor is not None and cursor.direction == NEWER:
        batch = list(
            jobs.filter(newer_than(created_at=cursor.created_at, job_id=cursor.id)).order_by(
                "created_at", "id"
            )[: size + 1]
        )
        more = len(batch) > size
        found = batch[:size][::-1]
        return KeysetPage(
            jobs=found,
            older=Cursor.after(found[-1], direction=OLDER) if found else None,
            newer=Cursor.after(found[0], direction=NEWER) if more else None,
        )
    if cursor is not None:
        jobs = jobs.filter(_older_than(cursor))
    batch = list(jobs.order_by("-created_at", "-id")[: size + 1])
    found = batch[:size]
    return KeysetPage(
        jobs=found,
        older=Cursor.after(found[-1], direction=OLDER) if len(batch) > size else None,
        newer=Cursor.after(found[0], direction=NEWER) if cursor is not None and found else None,
    )
