"""What a process checks before it serves with DEBUG off: no development login left behind.

``make run`` creates a demo login, demo / demo, a superuser (``manage.py ensure_demo_user``,
DEBUG only). Should that database ever be served with DEBUG off (``make run`` pointed at the
production database, a copied SQLite file), anyone could log in as an administrator. So the
web process (``copilot.asgi``) and ``runworker`` refuse to start while that login works, with
one line saying how to remove it.

Not a Django system check: ``@register(deploy=True)`` checks run only under
``check --deploy``, never when a server starts. The cost is one query at start-up, plus one
password hash when a user ``demo`` exists.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.db import DatabaseError, connections

from copilot.config import ConfigError

logger = logging.getLogger(__name__)

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"


def demo_login_works() -> bool:
    """True when a user ``demo`` exists whose password is ``demo``.

    False, with a warning, when the database cannot answer: no user table yet (``migrate``
    has not run, so nobody can log in) or no database; start-up does not wait for it.
    """
    users = get_user_model()._default_manager.filter(username=DEMO_USERNAME)
    try:
        encoded = users.values_list("password", flat=True).first()
    except DatabaseError as exc:
        logger.warning("demo login check skipped, the database did not answer: error=%s", exc)
        return False
    # check_password() alone, not User.check_password(): that one may rewrite the hash.
    return encoded is not None and check_password(DEMO_PASSWORD, encoded)


def refuse_demo_login() -> None:
    """Raise :class:`ConfigError` when DEBUG is off and the demo login works.

    The query runs in a thread of its own, whose connection is closed after it: an ASGI
    server may import the application inside its running event loop, where Django refuses
    database calls.
    """
    if settings.DEBUG:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-login-check") as pool:
        works = pool.submit(_in_own_thread).result()
    if works:
        raise ConfigError(
            f"DEBUG is off and the demo login ({DEMO_USERNAME} / {DEMO_PASSWORD}) exists: "
            f"give it another password (python manage.py changepassword {DEMO_USERNAME}) or "
            "delete that user, then start again."
        )


def _in_own_thread() -> bool:
    try:
        return demo_login_works()
    finally:
        connections.close_all()
