"""Pages and the API while the portal's database is away: ``503`` with ``Retry-After``.

A PostgreSQL restart or failover drops every connection and refuses new ones for a few
seconds (SQLite's version: a write lock held past the busy timeout). A request that meets it
is answered ``503 Service Unavailable`` with ``Retry-After``: an HTML page, or for the JSON
API ``{"detail": …}``, with one WARNING line in the log and no traceback. Only errors that
:func:`copilot.jobs.db_errors.is_outage` calls an outage get this; any other database error is
a bug and stays a 500 with its traceback.

Where such an error can surface, and who answers it:

- in a view (or a template it renders): :meth:`DatabaseUnavailableMiddleware.process_exception`;
- before the view, in another middleware's ``process_view`` (``RequestContextMiddleware``
  reads the session's user, a database query): Django does not pass those to
  ``process_exception``, so this middleware, first in ``MIDDLEWARE``, loads the user itself in
  its own ``process_view``, which runs before theirs;
- in the API's operations and auth: django-ninja's handler (:mod:`copilot.web.api.errors`),
  which answers with the same words;
- anywhere else (a session saved on the way out): Django turns the error into a 500 inside
  the middleware that raised it, before any outer middleware sees it; :func:`server_error`,
  the portal's ``handler500``, answers it (with ``DEBUG`` off; with it on, Django's debug page).

The connection pool needs nothing from here: it drops a broken connection when it is given
back, and checks each one it lends (:func:`copilot.config.database_config`), so requests
succeed again as soon as the database answers, without a restart.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults

from copilot.jobs.db_errors import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_DETAIL,
    is_outage,
    outage_reason,
)

logger = logging.getLogger(__name__)

TEMPLATE = "copilot/db_unavailable.html"
API_PREFIX = "/api/"


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The 503 for ``request`` (JSON under ``/api/``, else the page), logged in one line."""
    log_unavailable(request, exc)
    response: HttpResponse
    if request.path.startswith(API_PREFIX):
        response = JsonResponse({"detail": UNAVAILABLE_DETAIL}, status=503)
    else:
        # Rendered without the request: its context processors would read the session's
        # user, from the database that is away.
        context = {
            "title": "Service unavailable",
            "user": AnonymousUser(),
            "detail": UNAVAILABLE_DETAIL,
        }
        response = HttpResponse(render_to_string(TEMPLATE, context), status=503)
    return mark_unavailable(response)


def mark_unavailable(response: HttpResponse) -> HttpResponse:
    """``Retry-After`` and ``no-store``; marked as logged, so Django does not log it again
    (an ERROR line for every 5xx)."""
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log
    return response


def log_unavailable(request: HttpRequest, exc: BaseException) -> None:
    logger.warning(
        "database unavailable, answered 503 method=%s path=%s reason=%s",
        request.method,
        request.path,
        outage_reason(exc),
    )


class DatabaseUnavailableMiddleware:
    """First in ``MIDDLEWARE``: a request that meets a database outage gets the 503."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func, view_args, view_kwargs
    ) -> HttpResponse | None:
        # The session's user, loaded here (and cached on the request) so that an outage
        # meets this try rather than a later middleware's process_view. The same query
        # RequestContextMiddleware and the views' login checks make anyway.
        user = getattr(request, "user", None)
        if user is None:
            return None
        try:
            user.is_authenticated  # noqa: B018  # evaluates the lazy user
        except Exception as exc:
            if not is_outage(exc):
                raise
            return unavailable_response(request, exc)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_outage(exception):
            return unavailable_response(request, exception)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: the 503 when the error being handled is an outage, else Django's 500."""
    exc = sys.exc_info()[1]
    if exc is not None and is_outage(exc):
        return unavailable_response(request, exc)
    return defaults.server_error(request)
