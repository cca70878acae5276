"""API tokens: a key is made once, shown once, and stored only as its SHA-256."""

from __future__ import annotations

import hashlib
import logging
import secrets

from django.utils import timezone

from copilot.jobs.models import ApiToken

logger = logging.getLogger(__name__)

#: Bytes of randomness in a new key (it is shown as about 43 URL-safe characters).
KEY_BYTES = 32


def token_hash(*, key: str) -> str:
    """The SHA-256 (hex) under which a plain key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(*, user, name: str = "") -> tuple[ApiToken, str]:
    """Make a new token for ``user``; returns the row and the plain key (shown once only)."""
    key = secrets.token_urlsafe(KEY_BYTES)
    token = ApiToken.objects.create(user=user, key_hash=token_hash(key=key), name=name)
    logger.info("api token created id=%s user=%s", token.pk, user.pk)
    return token, key


def user_for_key(*, key: str):
    """The active user a plain key belongs to (and note its use), or None."""
    try:
        token = ApiToken.objects.select_related("user").get(key_hash=token_hash(key=key))
    except ApiToken.DoesNotExist:
        return None
    if not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user
