"""What the API answers (a job, a page of jobs) and the list's query parameters.

:class:`JobOut` describes exactly what :func:`copilot.jobs.presenters.job_as_dict` returns
(the same JSON as ``submit_job --json``): the operations return that dict, and django-ninja
checks it against this schema. Times and ids stay the strings the presenter made.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from ninja import Field, Schema
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from copilot.jobs.keyset import CURSOR_MESSAGE, MAX_CURSOR_CHARS, InvalidCursor, cursor_decode
from copilot.jobs.models import GenerationJob

#: Jobs on one page of the list.
PAGE_SIZE = 50
#: The last page number taken (50 million jobs in): larger numbers are a 400, not a query.
MAX_PAGE = 1_000_000
PAGE_MESSAGE = f"Must be a whole number from 1 to {MAX_PAGE:,}."
#: ASCII digits only: ``int`` takes other scripts' digits (and spaces around them).
_PAGE = re.compile(r"[0-9]{1,7}")

Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class JobOut(Schema):
    """A job: its state, progress, result or error, and the last event's number."""

    id: Uuid
    kind: GenerationJob.Kind
    status: GenerationJob.Status
    attempt: int = Field(ge=1)
    upstream_job_id: str | None = Field(description="The Agent Generator's id, once submitted.")
    progress: dict[str, Any] | None = Field(description="`{percent, phase}`, once known.")
    error_type: str | None
    error_message: str | None
    result: dict[str, Any] | None = Field(description="A finished job's result, else null.")
    created_at: DateTime
    started_at: DateTime | None = Field(description="This attempt's start.")
    finished_at: DateTime | None
    last_event_seq: int = Field(ge=0, description="The number of the job's last event.")
    notify_email: bool = Field(description="Whether the owner is emailed when an attempt ends.")


class JobPage(Schema):
    """One page of jobs, newest first, and the next page's URL (null on the last)."""

    results: list[JobOut]
    next: Annotated[str, Field(json_schema_extra={"format": "uri"})] | None


def _page_digits(value: Any) -> Any:
    if isinstance(value, str) and not _PAGE.fullmatch(value):
        raise PydanticCustomError("page", PAGE_MESSAGE)
    return value


def _cursor_made_here(value: Any) -> Any:
    if isinstance(value, str):
        try:
            cursor_decode(value)
        except InvalidCursor:
            raise PydanticCustomError("cursor", CURSOR_MESSAGE) from None
    return value


class JobFilters(Schema):
    """The list's query parameters."""

    status: GenerationJob.Status | None = Field(None, description="Only jobs in this status.")
    kind: GenerationJob.Kind | None = Field(None, description="Only jobs of this kind.")
    cursor: Annotated[str, BeforeValidator(_cursor_made_here)] | None = Field(
        None,
        max_length=MAX_CURSOR_CHARS,
        description="Where the page starts: copy it from a `next` link (an opaque token). "
        "Each page takes the same time however deep it is.",
    )
    page: Annotated[int, BeforeValidator(_page_digits)] = Field(
        1,
        ge=1,
        le=MAX_PAGE,
        description="50 jobs a page, counted from the newest (the old way: deep page numbers "
        "get slower, and jobs created meanwhile shift the pages). Ignored with `cursor`; "
        "`next` links use a cursor.",
    )


def query_message(name: str, error: Mapping[str, Any]) -> str:
    """A query parameter's error, in the portal's words (never repeating the value)."""
    if name == "page":
        return PAGE_MESSAGE
    if name == "cursor":
        return CURSOR_MESSAGE
    choices = {"status": GenerationJob.Status, "kind": GenerationJob.Kind}.get(name)
    if choices is not None:
        return f"Unknown {name}; use one of {', '.join(choices.values)}."
    return str(error.get("msg", "Invalid."))
