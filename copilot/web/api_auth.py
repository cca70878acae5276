"""Who is calling the JSON API: a bearer token, or the browser's session with its CSRF token.

A script sends ``Authorization: Bearer <key>``; the key is looked up by its SHA-256 (the plain
key is never stored) and needs no CSRF token, since a browser never adds that header by itself.
Without that header the request is the session's: Django's session login, and for unsafe
methods the same CSRF check Django's middleware makes for forms (``X-CSRFToken`` header).

:func:`api_view` wraps a view with both, and answers failures as JSON: 401 when nobody is
authenticated (or the token is unknown or expired), 403 when the CSRF check fails, 405 for a
method the view does not take, 415 for a body that is not ``application/json`` (an empty
body with no Content-Type is no body), 413 for one larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE``.
The body's type and size are checked before the CSRF check, which would otherwise parse a
form or multipart body (and fail on a multipart one the view then reads).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from copilot.jobs.exceptions import TokenExpired
from copilot.jobs.tokens import user_for_key

BEARER_PREFIX = "bearer "
JSON_TYPE = "application/json"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def json_error(*, status: int, detail: str, **headers: str) -> JsonResponse:
    """``{"detail": …}`` with a status, the API's shape for every error but field errors."""
    response = JsonResponse({"detail": detail}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, answering the reason of a rejection instead of a 403 page."""

    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def _no_response(request: HttpRequest) -> HttpResponse:
    """The check's ``get_response`` and view: never called (and not ``csrf_exempt``)."""
    return HttpResponse()


def _csrf_failure(request: HttpRequest) -> str | None:
    check = _CsrfCheck(_no_response)
    check.process_request(request)
    rejection = check.process_view(request, _no_response, (), {})
    # process_view answers what _reject does: the reason, where the stubs know a 403 response.
    return cast("str | None", rejection)


def body_too_large(*, size: int | None = None) -> JsonResponse:
    """413, naming the limit (``DATA_UPLOAD_MAX_MEMORY_SIZE``)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    said = f"{size:,} bytes" if size is not None else "too large"
    return json_error(status=413, detail=f"The body is {said}; the limit is {limit:,} bytes.")


def _content_length(request: HttpRequest) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def _body_refusal(request: HttpRequest) -> JsonResponse | None:
    """415 for a body that is not JSON, 413 for one too large; neither reads the body."""
    size = _content_length(request)
    declared = bool(request.META.get("CONTENT_TYPE")) or size > 0
    if declared and (request.content_type or "").lower() != JSON_TYPE:
        sent = request.content_type or "no Content-Type"
        return json_error(
            status=415,
            detail=f"Unsupported media type ({sent}); send {JSON_TYPE}.",
            Accept_Post=JSON_TYPE,
        )
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and size > limit:
        return body_too_large(size=size)
    return None


def _bearer_key(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[: len(BEARER_PREFIX)].lower() != BEARER_PREFIX:
        return None
    return header[len(BEARER_PREFIX) :].strip()


def api_view(*, methods: Iterable[str]) -> Callable:
    """Decorate a JSON API view: check the method, authenticate the caller, check the body's
    type and size (unsafe methods), then CSRF for sessions.

    The view runs with ``request.user`` set to the token's user or the session's user.
    """
    allowed = tuple(m.upper() for m in methods)

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in allowed:
                return json_error(
                    status=405,
                    detail=f"Method {request.method} not allowed.",
                    Allow=", ".join(allowed),
                )
            key = _bearer_key(request)
            if key is not None:
                try:
                    user = user_for_key(key=key) if key else None
                except TokenExpired:
                    return json_error(
                        status=401,
                        detail="Token expired; ask for a new one.",
                        WWW_Authenticate='Bearer error="invalid_token", '
                        'error_description="The token expired"',
                    )
                if user is None:
                    return json_error(
                        status=401,
                        detail="Invalid token.",
                        WWW_Authenticate='Bearer error="invalid_token"',
                    )
                request.user = user
            elif not request.user.is_authenticated:
                return json_error(
                    status=401,
                    detail="Authentication credentials were not provided.",
                    WWW_Authenticate="Bearer",
                )
            if request.method not in SAFE_METHODS and (refusal := _body_refusal(request)):
                return refusal
            if key is None and (reason := _csrf_failure(request)) is not None:
                return json_error(status=403, detail=f"CSRF failed: {reason}")
            return view(request, *args, **kwargs)

        return csrf_exempt(wrapper)

    return decorator
