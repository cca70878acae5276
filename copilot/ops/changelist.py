"""What keeps the admin's job changelist fast at a million jobs: its count and its filters.

- :class:`EstimatedCountPaginator`: on PostgreSQL a changelist's total is the planner's
  estimate when it is large (``pg_class.reltuples`` for the whole table, the plan's rows for
  a filtered or searched one), exact below :attr:`~EstimatedCountPaginator.exact_below`;
  deep pages read their ids from an index first (a "deferred join"), then only those rows.
- :class:`OwnerFilter`: the owner's username typed in, instead of Django's related filter,
  which lists every distinct owner of every job (a scan of the jobs table per page view).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from django.contrib import admin
from django.core.paginator import Page, Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """A paginator whose ``count`` may be an estimate (then ``estimated`` is True)."""

    #: Counts the planner puts below this are counted exactly (cheap at that size).
    exact_below = 10_000
    #: Pages starting this deep read their ids first (an index-only scan), then the rows.
    deferred_from = 1_000

    estimated = False

    @cached_property
    def count(self) -> int:
        jobs = self.object_list
        if not isinstance(jobs, QuerySet) or connections[jobs.db].vendor != "postgresql":
            return super().count
        guess = self._table_rows(jobs) if not jobs.query.where else self._plan_rows(jobs)
        if guess < self.exact_below:
            return super().count
        self.estimated = True
        return guess

    @staticmethod
    def _table_rows(jobs: QuerySet) -> int:
        """The table's row count as of its last ANALYZE (-1 when never analysed)."""
        with connections[jobs.db].cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                [jobs.model._meta.db_table],
            )
            row = cursor.fetchone()
        return int(row[0]) if row else -1

    @staticmethod
    def _plan_rows(jobs: QuerySet) -> int:
        plan = json.loads(jobs.explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        rows = self.object_list
        if bottom >= self.deferred_from and isinstance(rows, QuerySet):
            # OFFSET still walks the skipped rows, but only in an index of (…, created_at, id).
            ids = list(rows.values_list("pk", flat=True)[bottom:top])
            return Page(rows.filter(pk__in=ids), number, self)
        return Page(rows[bottom:top], number, self)


class OwnerFilter(admin.ListFilter):
    """Jobs of the user with this exact username (typed in a box: no list of owners)."""

    title = "owner"
    parameter_name = "owner"
    template = "admin/copilot/owner_filter.html"

    def __init__(self, request: HttpRequest, params: dict[str, Any], model, model_admin) -> None:
        super().__init__(request, params, model, model_admin)
        value = params.pop(self.parameter_name, None)
        if isinstance(value, list):
            value = value[-1] if value else None
        self.value = (value or "").strip()
        if self.value:
            self.used_parameters[self.parameter_name] = self.value

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [self.parameter_name]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value:
            return queryset
        return queryset.filter(owner__username=self.value)

    def choices(self, changelist) -> Iterator[Mapping[str, object]]:
        """One "choice": the box, with the changelist's other parameters to keep."""
        keep = [
            (name, value)
            for name, values in self.request.GET.lists()
            if name not in (self.parameter_name, "p")
            for value in values
        ]
        yield {
            "value": self.value,
            "keep": keep,
            "clear": changelist.get_query_string(remove=[self.parameter_name]),
            "selected": bool(self.value),
        }
