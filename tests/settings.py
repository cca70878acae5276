"""Settings for the test suite: the portal's own, with test-only defaults in the environment.

Anything set in the real environment wins (``make test`` points a second pass at PostgreSQL
through ``DATABASE_URL``). SQLite tests use a file, not ``:memory:``, so that the runner and
web processes a test starts can share the test database.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-" + "x" * 20)
os.environ.setdefault("COPILOT_RUNNER_IN_PROCESS", "false")
os.environ.setdefault("AGENT_GENERATOR_POLL_INTERVAL", "0.05")
os.environ.setdefault("AGENT_GENERATOR_POLL_MAX_INTERVAL", "0.2")
# DEBUG is off here, where the embedded Agent Generator is refused. No test reaches the URL of
# the settings: tests that need an Agent Generator build a client for theirs or start one and
# set the URL. Port 9 (discard) has nothing listening, so a stray call fails at once.
os.environ.setdefault("AGENT_GENERATOR_URL", "http://127.0.0.1:9")
# Tests that use the embedded service in this process keep its jobs in memory, never in the
# project's var/agent-generator.sqlite3 (tests of the file give their own path).
os.environ.setdefault("COPILOT_EMBEDDED_AGENT_GENERATOR_STORE", "memory")

from copilot.settings import *  # noqa: F403
from copilot.settings import BASE_DIR, DATABASES

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
# Login throttling stays on in tests, as in production. Its backend refuses an authenticate()
# with no request, as Client.login() makes: log in with client.force_login(user), or POST to
# the login page (tests/copilot/web/test_login_throttle.py). Failed logins count per username.
