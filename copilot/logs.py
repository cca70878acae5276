"""Logs an operator can search: ``LOG_FORMAT=json`` and the ids each line carries.

- :class:`JsonFormatter`: one JSON object per line, ``time``, ``level``, ``logger``,
  ``message``, the ``job_id``, ``user_id`` and ``request_id`` known where the line was
  logged, and a traceback as ``exc_info`` (one field, so a line stays one object). The
  default, ``LOG_FORMAT=text``, stays the readable ``LOGGING["formatters"]["plain"]``.
- The ids are context variables: the runner sets the job's around its drive
  (:class:`copilot.runner.drive.JobDrive`), :class:`RequestContextMiddleware` sets the
  request's and the user's for Django's views, and the event stream sets them for its own
  request. A request's id comes from its ``X-Request-ID`` header when that is a short safe
  token (a balancer's or proxy's), else it is a new random one; the response echoes it.

Wiring, at the project's top beside ``settings.py`` (whose ``LOGGING`` names the formatter):
it imports nothing of the portal, so every floor (runner, stream, web) may set its ids.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nothing of Django at import: LOGGING names this module during setup
    from django.http import HttpRequest, HttpResponse

job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
user_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("user_id", default=None)
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

REQUEST_ID_HEADER = "X-Request-ID"

#: An incoming request id is kept when it is this: short, and nothing a log reader or a
#: header could trip on (no spaces, quotes, control characters).
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_from(header: str | bytes | None) -> str:
    """The request's id: ``header`` when it is a short safe token, else a new random one."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if header and _SAFE_REQUEST_ID.fullmatch(header):
        return header
    return secrets.token_hex(16)


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON (see the module's docstring for its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (
            ("job_id", job_id_var),
            ("user_id", user_id_var),
            ("request_id", request_id_var),
        ):
            value = var.get()
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class OncePer(logging.Filter):
    """Lets one record of a logger through per ``seconds``, the rest of that time dropped.

    For a library that logs each attempt of a retry loop: psycopg's pool writes a warning for
    every failed connection attempt (two or three a second while the database is away),
    where the runner and the web already log one line per outage. The first line still
    says why (refused, bad password, unknown host), and a long outage shows one a minute.
    """

    def __init__(self, seconds: float = 60.0) -> None:
        super().__init__()
        self.seconds = seconds
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        last = self._last.get(record.name)
        if last is not None and 0 <= record.created - last < self.seconds:
            return False
        self._last[record.name] = record.created
        return True


class RequestContextMiddleware:
    """Near the top of ``MIDDLEWARE``: the request's id (and, once known, its user's) on every
    log line of the request, and the id in the response's ``X-Request-ID``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request_token = request_id_var.set(request_id)
        user_token = user_id_var.set(None)
        try:
            response = self.get_response(request)
        finally:
            user_id_var.reset(user_token)
            request_id_var.reset(request_token)
        response[REQUEST_ID_HEADER] = request_id
        return response

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> None:
        # After the authentication middleware, before the view: the session's user (the
        # query the view's own login check makes anyway; cached on the request).
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            user_id_var.set(user.pk)
