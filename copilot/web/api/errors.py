"""The API's errors: one shape for field errors, one for everything else, and their handlers.

    400 {"errors": {field: message}}   a bad body or query parameter (the body's own faults
                                       under "body": not JSON, nested too deep, not an object)
    4xx {"detail": message}            401, 403, 404, 405, 409, 413, 415, 429
    503 {"detail": message}            the database is away for a moment (with Retry-After)

Every exception an operation or django-ninja raises on purpose is answered here, so no
request the API refuses becomes a 500 or an HTML page. Messages never repeat the input back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError

from copilot.jobs.db_errors import UNAVAILABLE_DETAIL, is_outage
from copilot.jobs.exceptions import (
    IllegalTransition,
    InvalidJobRequest,
    JobLimitReached,
    JobNotFound,
)
from copilot.jobs.job_requests import field_errors
from copilot.web import db_unavailable
from copilot.web.api.schemas import query_message

NOT_FOUND = "Not found."
NO_CREDENTIALS = "Authentication credentials were not provided."
#: Seconds a client is told to wait at the active-jobs limit (jobs take minutes).
LIMIT_RETRY_AFTER_SECONDS = 60
JSON_TYPE = "application/json"


class FieldErrors(Schema):
    """400: what is wrong, by field (``body`` for the body as a whole)."""

    errors: dict[str, str]


class Detail(Schema):
    """Every other error: one sentence."""

    detail: str


class ApiError(Exception):
    """An answer other than the operation's own: ``{"detail": …}`` with a status and headers."""

    status = 400

    def __init__(self, detail: str, **headers: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers

    def response(self, api: NinjaAPI, request: HttpRequest) -> HttpResponse:
        return detail_response(api, request, status=self.status, detail=self.detail, **self.headers)


class BodyInvalid(ApiError):
    """400 about the body as a whole (not JSON, nested too deep)."""

    def response(self, api: NinjaAPI, request: HttpRequest) -> HttpResponse:
        return api.create_response(request, {"errors": {"body": self.detail}}, status=400)


class InvalidToken(ApiError):
    """401 for a bearer token that is unknown, revoked, expired or its user's inactive."""

    status = 401


class CsrfFailed(ApiError):
    """403: a session's unsafe request without the CSRF token."""

    status = 403


class BodyTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


def detail_response(
    api: NinjaAPI, request: HttpRequest, *, status: int, detail: str, **headers: str
) -> HttpResponse:
    """``{"detail": …}``; a header ``Retry_After`` is sent as ``Retry-After``."""
    response = api.create_response(request, {"detail": detail}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def body_too_large(*, size: int | None = None) -> BodyTooLarge:
    """413, naming the limit (``DATA_UPLOAD_MAX_MEMORY_SIZE``)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
    said = f"{size:,} bytes" if size is not None else "too large"
    return BodyTooLarge(f"The body is {said}; the limit is {limit:,} bytes.")


def validation_errors(errors: Iterable[Mapping[str, Any]]) -> tuple[int, dict[str, str]]:
    """The status and ``{field: message}`` for django-ninja's errors (``loc`` starts with the
    parameter's source): a path that is not a job id is a 404, like an unknown job."""
    errors = list(errors)
    if any(error["loc"][0] == "path" for error in errors):
        return 404, {}
    body = [{**e, "loc": tuple(e["loc"][2:])} for e in errors if e["loc"][0] == "body"]
    found = field_errors(body)
    for error in errors:
        if error["loc"][0] != "body":
            name = str(error["loc"][1]) if len(error["loc"]) > 1 else error["loc"][0]
            found.setdefault(name, query_message(name, error))
    return 400, found


def install_handlers(api: NinjaAPI) -> None:
    """Answer every refusal as JSON, in one of the two shapes."""

    def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return exc.response(api, request)

    def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        # django-ninja wraps what the body parser raises: answer the parser's own error.
        if isinstance(exc.__cause__, ApiError):
            return exc.__cause__.response(api, request)
        return detail_response(api, request, status=exc.status_code, detail=str(exc))

    def on_no_credentials(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return detail_response(
            api, request, status=401, detail=NO_CREDENTIALS, WWW_Authenticate="Bearer"
        )

    def on_validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        status, errors = validation_errors(exc.errors)
        if status == 404:
            return detail_response(api, request, status=404, detail=NOT_FOUND)
        return api.create_response(request, {"errors": errors}, status=400)

    def on_invalid_request(request: HttpRequest, exc: InvalidJobRequest) -> HttpResponse:
        return api.create_response(request, {"errors": exc.errors}, status=400)

    def on_not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
        return detail_response(api, request, status=404, detail=NOT_FOUND)

    def on_illegal(request: HttpRequest, exc: IllegalTransition) -> HttpResponse:
        return detail_response(api, request, status=409, detail=f"Not allowed: {exc}.")

    def on_limit(request: HttpRequest, exc: JobLimitReached) -> HttpResponse:
        return detail_response(
            api,
            request,
            status=429,
            detail=str(exc),
            Retry_After=str(LIMIT_RETRY_AFTER_SECONDS),
        )

    def on_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        # A chunked body has no Content-Length to refuse it by: Django stops reading it here.
        return body_too_large().response(api, request)

    def on_database_error(request: HttpRequest, exc: Exception) -> HttpResponse:
        if not is_outage(exc):
            raise exc  # a bug, not an outage: Django's 500, with its traceback
        db_unavailable.log_unavailable(request, exc)
        response = detail_response(api, request, status=503, detail=UNAVAILABLE_DETAIL)
        return db_unavailable.mark_unavailable(response)

    handlers: list[tuple[type[Exception], Any]] = [
        (ApiError, on_api_error),
        (HttpError, on_http_error),
        (AuthenticationError, on_no_credentials),
        (ValidationError, on_validation),
        (InvalidJobRequest, on_invalid_request),
        (JobNotFound, on_not_found),
        (Http404, on_not_found),
        (IllegalTransition, on_illegal),
        (JobLimitReached, on_limit),
        (RequestDataTooBig, on_too_big),
        (OperationalError, on_database_error),
        (InterfaceError, on_database_error),
    ]
    for exc_class, handler in handlers:
        api.add_exception_handler(exc_class, handler)
