"""The JSON API for scripts: the same services and permissions as the pages.

    POST /api/jobs/                  {"kind": …, <the protocol's fields>}  -> 201 job
    GET  /api/jobs/?status=&kind=&page=                                   -> 200 {"results", "next"}
    GET  /api/jobs/<id>/                                                  -> 200 job
    POST /api/jobs/<id>/cancel/                                           -> 200 job | 409
    POST /api/jobs/<id>/retry/                                            -> 200 job | 409 | 429

A job is :func:`copilot.jobs.presenters.job_as_dict` (the same as ``submit_job --json``). Errors:
400 ``{"errors": {field: message}}`` for a bad body or parameter (JSON nested deeper than
``MAX_JSON_DEPTH`` too), 401/403/405/413/415 (see :mod:`copilot.web.api_auth`), 404
``{"detail": "Not found."}`` for an unknown job or someone else's, 409 for a change the job's
state does not allow, 429 with ``Retry-After`` at the active-jobs limit (a submit or a retry).
"""

from __future__ import annotations

import json
import logging
import re
import uuid

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.urls import reverse

from copilot.jobs import services
from copilot.jobs.exceptions import (
    IllegalTransition,
    InvalidJobRequest,
    JobLimitReached,
    JobNotFound,
)
from copilot.jobs.job_requests import JSON_TOO_DEEP, json_too_deep
from copilot.jobs.models import GenerationJob
from copilot.jobs.presenters import job_as_dict
from copilot.jobs.selectors import job_get
from copilot.web.api_auth import api_view, body_too_large, json_error

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
#: The last page number taken (50 million jobs in): larger numbers are a 400, not a query.
MAX_PAGE = 1_000_000
#: ASCII digits only: ``str.isdigit`` and ``int`` take other scripts' digits (and isdigit "²").
_PAGE = re.compile(r"[0-9]{1,7}")
#: Seconds a client is told to wait at the active-jobs limit (jobs take minutes).
LIMIT_RETRY_AFTER_SECONDS = 60
NOT_FOUND = "Not found."


def _field_errors(errors: dict[str, str]) -> JsonResponse:
    return JsonResponse({"errors": errors}, status=400)


def _limit_reached(exc: JobLimitReached) -> JsonResponse:
    return json_error(status=429, detail=str(exc), Retry_After=str(LIMIT_RETRY_AFTER_SECONDS))


def _page_number(text: str) -> int | None:
    """The page number ``text`` names (1 to MAX_PAGE, ASCII digits), or None."""
    if not _PAGE.fullmatch(text):
        return None
    number = int(text)
    return number if 1 <= number <= MAX_PAGE else None


def _job(request: HttpRequest, job_id: str) -> GenerationJob:
    try:
        return job_get(job_id=uuid.UUID(job_id), user=request.user)
    except ValueError:
        raise JobNotFound(f"no job {job_id!r}") from None


@api_view(methods=["GET", "POST"])
def jobs(request: HttpRequest) -> JsonResponse:
    """``GET``: the caller's jobs (staff: all), newest first. ``POST``: submit a job."""
    if request.method == "POST":
        return _job_create(request)
    return _job_list(request)


def _job_list(request: HttpRequest) -> JsonResponse:
    found = GenerationJob.objects.owned_by(request.user)
    errors: dict[str, str] = {}
    for name, choices in (("status", GenerationJob.Status), ("kind", GenerationJob.Kind)):
        value = request.GET.get(name)
        if value in choices.values:
            found = found.filter(**{name: value})
        elif value:
            errors[name] = f"Unknown {name} {value!r}; use one of {', '.join(choices.values)}."
    page = _page_number(request.GET.get("page", "1"))
    if page is None:
        errors["page"] = f"Must be a whole number from 1 to {MAX_PAGE:,}."
    if errors or page is None:
        return _field_errors(errors)
    start = (page - 1) * PAGE_SIZE
    batch = list(found[start : start + PAGE_SIZE + 1])
    next_url = None
    if len(batch) > PAGE_SIZE and page < MAX_PAGE:
        query = request.GET.copy()
        query["page"] = str(page + 1)
        next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
    return JsonResponse(
        {"results": [job_as_dict(job) for job in batch[:PAGE_SIZE]], "next": next_url}
    )


def _job_create(request: HttpRequest) -> JsonResponse:
    try:
        raw = request.body
    except RequestDataTooBig:  # chunked, with no Content-Length for api_view to check
        return body_too_large()
    if json_too_deep(raw):
        return _field_errors({"body": JSON_TOO_DEEP})
    try:
        body = json.loads(raw or b"")
    except ValueError as exc:
        return _field_errors({"body": f"Not valid JSON: {exc}."})
    if not isinstance(body, dict):
        return _field_errors({"body": 'Must be a JSON object: {"kind": …, …}.'})
    kind = body.pop("kind", None)
    if not kind:
        return _field_errors({"kind": "This field is required."})
    try:
        job = services.job_submit(user=request.user, kind=str(kind), payload=body)
    except InvalidJobRequest as exc:
        return _field_errors(exc.errors)
    except JobLimitReached as exc:
        return _limit_reached(exc)
    response = JsonResponse(job_as_dict(job), status=201)
    response["Location"] = reverse("api_job", kwargs={"job_id": job.id})
    return response


@api_view(methods=["GET"])
def job(request: HttpRequest, job_id: str) -> JsonResponse:
    """One job."""
    try:
        return JsonResponse(job_as_dict(_job(request, job_id)))
    except JobNotFound:
        return json_error(status=404, detail=NOT_FOUND)


def _change(request: HttpRequest, job_id: str, *, service) -> JsonResponse:
    try:
        found = _job(request, job_id)
        changed = service(job_id=found.id, by=request.user)
    except JobNotFound:
        return json_error(status=404, detail=NOT_FOUND)
    except IllegalTransition as exc:
        return json_error(status=409, detail=f"Not allowed: {exc}.")
    except JobLimitReached as exc:
        return _limit_reached(exc)
    return JsonResponse(job_as_dict(changed))


@api_view(methods=["POST"])
def job_cancel(request: HttpRequest, job_id: str) -> JsonResponse:
    """Stop a job (a queued one at once, a running one as soon as its runner hears)."""
    return _change(request, job_id, service=services.job_cancel)


@api_view(methods=["POST"])
def job_retry(request: HttpRequest, job_id: str) -> JsonResponse:
    """Start a new attempt of a failed, timed-out or cancelled job."""
    return _change(request, job_id, service=services.job_retry)
