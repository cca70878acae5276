"""Who opens a stream: the bearer token of ``Authorization``, else the session.

Browsers follow a job with their session cookie; scripts with the JSON API's own tokens
(:mod:`copilot.jobs.tokens`), as ``Authorization: Bearer <key>``. A request that sends a
bearer token is the token's or nobody's: an unknown or expired token, or one whose user is
inactive, is a ``401`` even beside a valid session cookie, so a script never runs, unnoticed,
as whoever is logged in in the same cookie jar. Another scheme (``Basic``, which a proxy in
front of the portal may have the browser send) is not the portal's: the session decides, as
in the JSON API.

The stream keeps the session's key or the token's id, so the heartbeat's check
(:mod:`copilot.stream.access`) ends it once that login is gone.

Channels' auth middleware loads the session's user before the stream runs; during a database
outage that load fails outside the stream, where nothing would answer but a 500.
:func:`stream_auth_stack` keeps the failure in the scope instead, and :func:`stream_login`
raises it where the stream answers it (``503``, :mod:`copilot.stream.consumer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.contrib.auth.models import AnonymousUser

from copilot.jobs.db_errors import is_outage
from copilot.jobs.exceptions import TokenExpired
from copilot.jobs.tokens import (
    EXPIRED_TOKEN_CHALLENGE,
    EXPIRED_TOKEN_TEXT,
    INVALID_TOKEN_CHALLENGE,
    INVALID_TOKEN_TEXT,
    api_token_for_key,
)

BEARER_PREFIX = b"bearer "

#: The scope key of a database outage met while loading the session's user.
OUTAGE_SCOPE_KEY = "copilot.database_outage"


@dataclass(frozen=True, kw_only=True)
class StreamLogin:
    """The user a stream runs as, and the login that must hold while it is open."""

    user: Any  # the user model's instance, authenticated
    session_key: str | None = None
    token_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """A ``401``: its short text body and its headers."""

    body: bytes
    headers: list[tuple[bytes, bytes]]


NOT_LOGGED_IN = Refusal(body=b"Log in to follow this job.\n", headers=[])
INVALID_TOKEN = Refusal(
    body=INVALID_TOKEN_TEXT.encode() + b"\n",
    headers=[(b"www-authenticate", INVALID_TOKEN_CHALLENGE.encode())],
)
EXPIRED_TOKEN = Refusal(
    body=EXPIRED_TOKEN_TEXT.encode() + b"\n",
    headers=[(b"www-authenticate", EXPIRED_TOKEN_CHALLENGE.encode())],
)


def bearer_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key of the first ``Authorization: Bearer`` header (maybe empty); None: none sent."""
    for name, value in headers:
        scheme = value[: len(BEARER_PREFIX)].lower()
        if name.lower() == b"authorization" and scheme == BEARER_PREFIX:
            return value[len(BEARER_PREFIX) :].decode("latin-1").strip()
    return None


#: In a thread of its own: it writes (the token's use), and a write can wait out a lock (on
#: SQLite, the busy timeout); in the one thread all the streams' reads share, every stream of
#: the process would wait behind it.
_token_for_key = database_sync_to_async(api_token_for_key, thread_sensitive=False)


class _StreamAuthMiddleware(AuthMiddleware):
    """Channels' ``AuthMiddleware``, but a database outage leaves the user anonymous and
    the error in ``scope[OUTAGE_SCOPE_KEY]``, for the stream to answer."""

    async def resolve_scope(self, scope: dict) -> None:
        try:
            await super().resolve_scope(scope)
        except Exception as exc:
            if not is_outage(exc):
                raise
            scope["user"]._wrapped = AnonymousUser()
            scope[OUTAGE_SCOPE_KEY] = exc


def stream_auth_stack(inner: Any) -> Any:
    """Channels' ``AuthMiddlewareStack`` (cookies, session, user) for the stream."""
    return CookieMiddleware(SessionMiddleware(_StreamAuthMiddleware(inner)))


async def stream_login(scope: dict) -> StreamLogin | Refusal:
    """The login of a stream's request (``scope`` after :func:`stream_auth_stack`); raises the
    database's error when the session's user could not be loaded."""
    key = bearer_key(scope.get("headers", []))
    if key is not None:
        try:
            token = await _token_for_key(key=key) if key else None
        except TokenExpired:
            return EXPIRED_TOKEN
        if token is None:
            return INVALID_TOKEN
        return StreamLogin(user=token.user, token_id=token.pk)
    if (outage := scope.get(OUTAGE_SCOPE_KEY)) is not None:
        raise outage
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return NOT_LOGGED_IN
    session_key = getattr(scope.get("session"), "session_key", None)
    return StreamLogin(user=user, session_key=session_key)
