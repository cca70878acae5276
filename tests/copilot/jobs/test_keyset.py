"""Keyset pages of jobs: newest first, ties broken by id, nothing missed or repeated."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from copilot.jobs.keyset import (
    NEWER,
    OLDER,
    Cursor,
    InvalidCursor,
    cursor_decode,
    jobs_keyset_page,
)
from copilot.jobs.models import GenerationJob

pytestmark = [pytest.mark.django_db, pytest.mark.alldb]


def make(user, *, at, count: int = 1) -> list[GenerationJob]:
    return GenerationJob.objects.bulk_create(
        GenerationJob(owner=user, kind="decompose", created_at=at) for _ in range(count)
    )


def expected_order(jobs) -> list[uuid.UUID]:
    return [j.id for j in sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)]


def walk(jobs, *, size: int, direction: str = OLDER, start: Cursor | None = None):
    """Every page from ``start`` on in one direction, as lists of ids."""
    pages, cursor = [], start
    while True:
        page = jobs_keyset_page(jobs=jobs, cursor=cursor, size=size)
        pages.append([j.id for j in page.jobs])
        cursor = page.older if direction == OLDER else page.newer
        if cursor is None:
            return pages


def test_pages_follow_created_at_then_id_with_ties_across_page_boundaries(user):
    now = timezone.now()
    # Seven jobs share one created_at, so ties fall across the pages of three.
    made = make(user, at=now, count=7) + make(user, at=now - timedelta(seconds=1), count=4)
    pages = walk(GenerationJob.objects.all(), size=3)
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    assert [i for page in pages for i in page] == expected_order(made)


def test_newer_links_walk_back_the_same_pages(user):
    now = timezone.now()
    made = make(user, at=now, count=5) + make(user, at=now - timedelta(minutes=1), count=5)
    older = walk(GenerationJob.objects.all(), size=4)
    last = jobs_keyset_page(
        jobs=GenerationJob.objects.all(),
        cursor=Cursor.after(GenerationJob.objects.get(pk=older[-2][-1]), direction=OLDER),
        size=4,
    )
    assert [j.id for j in last.jobs] == older[-1] and last.older is None
    assert last.newer is not None and last.newer.direction == NEWER
    back = walk(GenerationJob.objects.all(), size=4, direction=NEWER, start=last.newer)
    assert back == older[-2::-1]  # the same pages, newest last
    assert [i for page in older for i in page] == expected_order(made)


def test_jobs_created_while_paging_are_neither_missed_nor_repeated(user):
    base = timezone.now() - timedelta(hours=1)
    old = make(user, at=base, count=6) + make(user, at=base - timedelta(seconds=1), count=6)
    jobs = GenerationJob.objects.all()
    seen: list[uuid.UUID] = []
    page = jobs_keyset_page(jobs=jobs, cursor=None, size=5)
    seen += [j.id for j in page.jobs]
    while page.older is not None:
        make(user, at=timezone.now(), count=2)  # new jobs arrive between page views
        page = jobs_keyset_page(jobs=jobs, cursor=page.older, size=5)
        seen += [j.id for j in page.jobs]
    assert seen == expected_order(old)  # every old job once, in order; new ones on newer pages


def test_filters_and_the_first_page(user, other_user):
    now = timezone.now()
    mine = make(user, at=now, count=3)
    make(other_user, at=now, count=3)
    page = jobs_keyset_page(jobs=GenerationJob.objects.filter(owner=user), cursor=None, size=3)
    assert [j.id for j in page.jobs] == expected_order(mine)
    assert page.older is None and page.newer is None


def test_a_cursor_round_trips_and_a_forged_one_is_refused():
    cursor = Cursor(created_at=timezone.now(), id=uuid.uuid4(), direction=NEWER)
    assert cursor_decode(cursor.encode()) == cursor
    for bad in ["", "x", cursor.encode()[:-3], cursor.encode() + "!!", "A" * 300]:
        with pytest.raises(InvalidCursor):
            cursor_decode(bad)
