"""API tokens: a key is made once, shown once, and stored only as its SHA-256.

A token lasts until it is deleted (revoked), or until its ``expires_at`` when it has one.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from django.utils import timezone

from copilot.jobs.exceptions import TokenExpired
from copilot.jobs.models import ApiToken

logger = logging.getLogger(__name__)

#: Bytes of randomness in a new key (it is shown as about 43 URL-safe characters).
KEY_BYTES = 32

#: What a refused token is told, by the API and by the event stream alike: the text and the
#: ``WWW-Authenticate`` challenge (RFC 6750's ``invalid_token``).
INVALID_TOKEN_TEXT = "Invalid token."
INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'
EXPIRED_TOKEN_TEXT = "Token expired; ask for a new one."
EXPIRED_TOKEN_CHALLENGE = f'{INVALID_TOKEN_CHALLENGE}, error_description="The token expired"'


def token_hash(*, key: str) -> str:
    """The SHA-256 (hex) under which a plain key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(
    *, user, name: str = "", expires_in: timedelta | None = None
) -> tuple[ApiToken, str]:
    """Make a new token for ``user``, valid for ``expires_in`` (None: until revoked); returns
    the row and the plain key (shown once only)."""
    key = secrets.token_urlsafe(KEY_BYTES)
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    token = ApiToken.objects.create(
        user=user, key_hash=token_hash(key=key), name=name, expires_at=expires_at
    )
    logger.info("api token created id=%s user=%s expires_at=%s", token.pk, user.pk, expires_at)
    return token, key


def api_token_for_key(*, key: str) -> ApiToken | None:
    """The token of a plain key whose user is active (with ``user`` loaded; its use noted),
    or None. The stream keeps the token's id, to end when the token goes.

    Raises TokenExpired when the key is known but its token has expired.
    """
    try:
        token = ApiToken.objects.select_related("user").get(key_hash=token_hash(key=key))
    except ApiToken.DoesNotExist:
        return None
    if not token.user.is_active:
        return None
    now = timezone.now()
    if token.is_expired(now=now):
        logger.info("api token expired id=%s user=%s", token.pk, token.user_id)
        raise TokenExpired(f"API token {token.pk} expired at {token.expires_at:%Y-%m-%d %H:%M}")
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def user_for_key(*, key: str):
    """The active user a plain key belongs to (and note its use), or None.

    Raises TokenExpired when the key is known but its token has expired.
    """
    token = api_token_for_key(key=key)
    return token.user if token is not None else None
