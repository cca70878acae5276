"""The jobs API: the same services and permissions as the pages.

    POST /api/jobs/                    createJob   {"kind": …, <the protocol's fields>} -> 201
    GET  /api/jobs/?status=&kind=&cursor= listJobs -> 200 {"results": [job…], "next": url|null}
    GET  /api/jobs/<id>/               getJob      -> 200 job
    POST /api/jobs/<id>/cancel/        cancelJob   -> 200 job | 409
    POST /api/jobs/<id>/retry/         retryJob    -> 200 job | 409 | 429

A job is :func:`copilot.jobs.presenters.job_as_dict`. Someone else's job is a 404, as an
unknown one is (staff see every job); errors are :mod:`copilot.web.api.errors`' two shapes.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Body, Path, Query, Router
from ninja.responses import Status

from copilot.jobs import services
from copilot.jobs.job_requests import JobRequest
from copilot.jobs.keyset import OLDER, Cursor, cursor_decode, jobs_keyset_page
from copilot.jobs.models import GenerationJob
from copilot.jobs.presenters import job_as_dict
from copilot.jobs.selectors import job_get
from copilot.web.api.errors import Detail, FieldErrors
from copilot.web.api.schemas import PAGE_SIZE, JobFilters, JobOut, JobPage

router = Router(tags=["jobs"])

_HEADER = {"schema": {"type": "string"}}
#: Headers of error answers, documented beside the statuses that send them.
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            **_HEADER,
            "description": '`Bearer`, or `Bearer error="invalid_token"` for a bad token.',
        }
    },
    413: {},
    415: {"Accept-Post": {**_HEADER, "description": "`application/json`"}},
    429: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 0},
            "description": "Seconds to wait before trying again.",
        }
    },
}
_LINKS = {
    name: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}}
    for name, operation in [
        ("GetJob", "getJob"),
        ("CancelJob", "cancelJob"),
        ("RetryJob", "retryJob"),
    ]
}


def _responses(ok: tuple[int, type], *errors: int) -> dict[int, type]:
    """``response=`` of an operation: its answer, and each error it can give, with its shape."""
    return {ok[0]: ok[1], **{code: FieldErrors if code == 400 else Detail for code in errors}}


def _extra(*errors: int, links: dict[str, Any] | None = None, ok: int = 200) -> dict[str, Any]:
    """``openapi_extra``: the error answers' headers (and the success's links)."""
    responses: dict[int, Any] = {
        code: {"headers": _HEADERS[code]} for code in errors if _HEADERS.get(code)
    }
    if links:
        responses[ok] = {"links": links}
    return {"responses": responses}


_CREATE_ERRORS = (400, 401, 403, 413, 415, 429)
_CHANGE_ERRORS = (401, 403, 404, 409, 413, 415)


@router.post(
    "/",
    response=_responses((201, JobOut), *_CREATE_ERRORS),
    operation_id="createJob",
    summary="Submit a job",
    url_name="jobs",
    openapi_extra=_extra(*_CREATE_ERRORS, links=_LINKS, ok=201),
)
def create_job(
    request: HttpRequest, response: HttpResponse, payload: Body[JobRequest]
) -> Status[dict[str, Any]]:
    """Submit a job: `kind` and that kind's fields. The new job is queued; its URL is in
    `Location`. A 429 says the caller has too many active jobs (see `Retry-After`)."""
    job = services.job_submit(
        user=request.user,
        kind=payload.kind,
        payload=payload.protocol_payload(),
        notify_email=payload.notify_email,
    )
    response["Location"] = reverse("api:job", kwargs={"job_id": job.id})
    return Status(201, job_as_dict(job))


@router.get(
    "/",
    response=_responses((200, JobPage), 400, 401),
    operation_id="listJobs",
    summary="List jobs",
    url_name="jobs",
    openapi_extra=_extra(401),
)
def list_jobs(request: HttpRequest, filters: Query[JobFilters]) -> dict[str, Any]:
    """The caller's jobs (staff: everyone's), newest first, 50 a page. Follow `next` for the
    next page: it carries a `cursor`, so every page answers as fast as the first."""
    found = GenerationJob.objects.owned_by(request.user)
    if filters.status is not None:
        found = found.filter(status=filters.status)
    if filters.kind is not None:
        found = found.filter(kind=filters.kind)
    if filters.cursor is None and filters.page > 1:
        # The old way, still answered: an OFFSET, slower the deeper it goes.
        start = (filters.page - 1) * PAGE_SIZE
        batch = list(found.order_by("-created_at", "-id")[start : start + PAGE_SIZE + 1])
        jobs = batch[:PAGE_SIZE]
        older = Cursor.after(jobs[-1], direction=OLDER) if len(batch) > PAGE_SIZE else None
    else:
        cursor = cursor_decode(filters.cursor) if filters.cursor is not None else None
        page = jobs_keyset_page(jobs=found, cursor=cursor, size=PAGE_SIZE)
        jobs, older = page.jobs, page.older
    next_url = None
    if older is not None:
        query = request.GET.copy()
        query.pop("page", None)
        query["cursor"] = older.encode()
        next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
    return {"results": [job_as_dict(job) for job in jobs], "next": next_url}


@router.get(
    "/{job_id}/",
    response=_responses((200, JobOut), 401, 404),
    operation_id="getJob",
    summary="Get a job",
    url_name="job",
    openapi_extra=_extra(401),
)
def get_job(request: HttpRequest, job_id: Path[uuid.UUID]) -> dict[str, Any]:
    """One job."""
    return job_as_dict(job_get(job_id=job_id, user=request.user))


@router.post(
    "/{job_id}/cancel/",
    response=_responses((200, JobOut), *_CHANGE_ERRORS),
    operation_id="cancelJob",
    summary="Cancel a job",
    url_name="job_cancel",
    openapi_extra=_extra(*_CHANGE_ERRORS),
)
def cancel_job(request: HttpRequest, job_id: Path[uuid.UUID]) -> dict[str, Any]:
    """Stop a job: a queued one at once, a running one as soon as its runner hears (its
    `status` changes then). A job that has ended is a 409. Takes no body (or any JSON)."""
    job = job_get(job_id=job_id, user=request.user)
    return job_as_dict(services.job_cancel(job_id=job.id, by=request.user))


@router.post(
    "/{job_id}/retry/",
    response=_responses((200, JobOut), *_CHANGE_ERRORS, 429),
    operation_id="retryJob",
    summary="Retry a job",
    url_name="job_retry",
    openapi_extra=_extra(*_CHANGE_ERRORS, 429),
)
def retry_job(request: HttpRequest, job_id: Path[uuid.UUID]) -> dict[str, Any]:
    """Start a new attempt of a failed, timed-out or cancelled job (else a 409). It counts
    against the active-jobs limit as a submit does (a 429). Takes no body (or any JSON)."""
    job = job_get(job_id=job_id, user=request.user)
    return job_as_dict(services.job_retry(job_id=job.id, by=request.user))
