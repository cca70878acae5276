"""Whether the logins behind a process's open streams still hold: one query per heartbeat.

A stream is authenticated once, when it opens, by its session or by an API token
(:mod:`copilot.stream.auth`). The stream hub asks this module once per heartbeat, for every
stream of the process at once, which of their sessions still exist (not deleted by a logout
or a flush, not expired), which of their tokens still work (not deleted, not expired) and
which of their users are still active; a stream whose session, token or user is gone ends
(:meth:`StreamHub._check_lag`). Tokens are checked with any session engine.

Sessions are checked with the database session backends (``SESSION_ENGINE`` ``db``, the
default here, or ``cached_db``, which writes every session through to the same table); with
any other engine (cache, signed cookies) they are not checked, and a stream opened before a
logout ends at its next rotation (``COPILOT_STREAM_MAX_SECONDS``) instead. Users are checked
with any engine. A changed password is not checked here either (Django notices it on the
session's next request, which for a stream is its next connection).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db.models import CharField, Q, QuerySet, Value
from django.db.models.functions import Cast
from django.utils import timezone

from copilot.jobs.models import ApiToken

#: The session engines whose sessions live in the ``django_session`` table.
DATABASE_SESSION_ENGINES = frozenset(
    {"django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cached_db"}
)


@dataclass(frozen=True, kw_only=True)
class ValidLogins:
    """The sessions, tokens and users that still hold, of those asked about."""

    sessions: frozenset[str] | None  # None: the engine's sessions are not checked
    users: frozenset[int]
    tokens: frozenset[int] = frozenset()

    def allows(
        self, *, session_key: str | None, user_id: int | None, token_id: int | None = None
    ) -> bool:
        """A stream opened with ``token_id`` needs that token; one without, its session."""
        if user_id is None or user_id not in self.users:
            return False
        if token_id is not None:
            return token_id in self.tokens
        return self.sessions is None or (session_key is not None and session_key in self.sessions)


def sessions_checked() -> bool:
    return settings.SESSION_ENGINE in DATABASE_SESSION_ENGINES


def logins_valid(
    *, session_keys: Iterable[str], user_ids: Iterable[int], token_ids: Iterable[int] = ()
) -> ValidLogins:
    """One query: the live sessions among ``session_keys``, working tokens among
    ``token_ids`` and active users among ``user_ids``."""
    now = timezone.now()
    users = (
        get_user_model()
        .objects.filter(pk__in=set(user_ids), is_active=True)
        .annotate(kind=Value("u"), key=Cast("pk", output_field=CharField()))
        .values_list("kind", "key")
    )
    check_sessions = sessions_checked()
    keys = set(session_keys) if check_sessions else set()
    parts: list[QuerySet[Any, tuple[str, str]]] = []  # the sessions and the tokens asked about
    if keys:
        parts.append(
            Session.objects.filter(session_key__in=keys, expire_date__gt=now)
            .annotate(kind=Value("s"))
            .values_list("kind", "session_key")
        )
    if tokens := set(token_ids):
        parts.append(
            ApiToken.objects.filter(
                Q(expires_at__isnull=True) | Q(expires_at__gt=now), pk__in=tokens
            )
            .annotate(kind=Value("t"), key=Cast("pk", output_field=CharField()))
            .values_list("kind", "key")
            .order_by()  # its Meta ordering has no place in a UNION
        )
    rows = list(users.union(*parts, all=True) if parts else users)
    return ValidLogins(
        sessions=frozenset(key for kind, key in rows if kind == "s") if check_sessions else None,
        users=frozenset(int(key) for kind, key in rows if kind == "u"),
        tokens=frozenset(int(key) for kind, key in rows if kind == "t"),
    )
