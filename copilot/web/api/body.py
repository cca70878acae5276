"""What a request body must be: JSON (``application/json``), not too large, not too deep.

:func:`body_check` refuses, without reading the body, one that is not JSON (415, with
``Accept-Post``) or larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` by its ``Content-Length``
(413); an empty body with no Content-Type is no body. It runs once the caller is known and
before the session's CSRF check, which would otherwise parse a form or multipart body.
:class:`JsonParser` then reads a JSON body: nesting deeper than ``MAX_JSON_DEPTH`` is refused
before ``json.loads`` (which recurses, and fails near 1,000 levels), and text that is not JSON
is a field error of ``body``.
"""

from __future__ import annotations

import json
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest
from ninja.parser import Parser

from copilot.jobs.json_limits import JSON_TOO_DEEP, json_too_deep
from copilot.web.api.errors import JSON_TYPE, BodyInvalid, UnsupportedMediaType, body_too_large

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _content_length(request: HttpRequest) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def body_check(request: HttpRequest) -> None:
    """Raise UnsupportedMediaType (415) or BodyTooLarge (413) for an unsafe method's body."""
    if request.method in SAFE_METHODS:
        return
    size = _content_length(request)
    declared = bool(request.META.get("CONTENT_TYPE")) or size > 0
    if declared and (request.content_type or "").lower() != JSON_TYPE:
        sent = request.content_type or "no Content-Type"
        raise UnsupportedMediaType(
            f"Unsupported media type ({sent}); send {JSON_TYPE}.", Accept_Post=JSON_TYPE
        )
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and size > limit:
        raise body_too_large(size=size)


class JsonParser(Parser):
    """django-ninja's JSON parser, with the depth limit and the API's own error for bad JSON."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        raw = request.body
        if json_too_deep(raw):
            raise BodyInvalid(JSON_TOO_DEEP)
        try:
            return cast("dict[str, Any]", json.loads(raw))
        except ValueError as exc:  # JSONDecodeError, or bytes that are no Unicode
            raise BodyInvalid(f"Not valid JSON: {exc}.") from None
