"""Who is calling the API: a bearer token, or the browser's session with its CSRF token.

django-ninja tries :class:`BearerToken` first, then :class:`SessionCsrf`. A script sends
``Authorization: Bearer <key>``; the key is looked up by its SHA-256 (the plain key is never
stored; its use is noted) and needs no CSRF token, since a browser never adds that header by
itself. A token that is present but unknown, expired or its user's inactive is a 401 at
once, never a fall back to the session. Without that header the request is the session's:
Django's session login, and for unsafe methods Django's CSRF check (``X-CSRFToken`` header)
through django-ninja's cookie auth. Nobody authenticated: 401 with ``WWW-Authenticate:
Bearer`` (:mod:`copilot.web.api.errors`).

Once the caller is known, and before the CSRF check (which would parse a form or multipart
body), the body's type and size are checked (:func:`copilot.web.api.body.body_check`): an
unauthenticated caller hears 401 whatever it sent.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer, SessionAuth

from copilot.jobs.exceptions import TokenExpired
from copilot.jobs.tokens import (
    EXPIRED_TOKEN_CHALLENGE,
    EXPIRED_TOKEN_TEXT,
    INVALID_TOKEN_CHALLENGE,
    INVALID_TOKEN_TEXT,
    user_for_key,
)
from copilot.logs import user_id_var
from copilot.web.api.body import body_check
from copilot.web.api.errors import CsrfFailed, InvalidToken

CSRF_FAILED = "CSRF failed: send the csrftoken cookie's value in the X-CSRFToken header."


class BearerToken(HttpBearer):
    """``Authorization: Bearer <key>``, a key from ``manage.py create_api_token``."""

    openapi_description = "An API token: `manage.py create_api_token --user NAME`."

    def __call__(self, request: HttpRequest) -> Any:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None  # no token: the session's turn
        return self.authenticate(request, key.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        try:
            user = user_for_key(key=token) if token else None
        except TokenExpired:
            raise InvalidToken(
                EXPIRED_TOKEN_TEXT, WWW_Authenticate=EXPIRED_TOKEN_CHALLENGE
            ) from None
        if user is None:
            raise InvalidToken(INVALID_TOKEN_TEXT, WWW_Authenticate=INVALID_TOKEN_CHALLENGE)
        request.user = user  # the services act as the token's user
        user_id_var.set(user.pk)  # and the request's log lines name them
        body_check(request)
        return user


class SessionCsrf(SessionAuth):
    """The portal's login session; unsafe methods need the ``X-CSRFToken`` header."""

    openapi_description = (
        "The portal's session cookie; POSTs also send the `csrftoken` cookie's value "
        "in an `X-CSRFToken` header."
    )

    def __call__(self, request: HttpRequest) -> Any:
        if not request.user.is_authenticated:
            return None  # a 401, whatever the CSRF token
        body_check(request)
        try:
            return super().__call__(request)  # Django's CSRF check, then the session's user
        except HttpError as exc:
            if exc.status_code == 403:
                raise CsrfFailed(CSRF_FAILED) from exc
            raise
