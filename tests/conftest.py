"""Fixtures and service checks shared by the whole suite.

Tests that need a service this machine may lack say so with a marker and skip with a one-line
reason when it is missing:

- ``postgres``: runs only when the default database is PostgreSQL (``make test`` runs a second
  pass with ``DATABASE_URL`` pointing at ``TEST_POSTGRES_URL``);
- ``redis``: needs the Redis at ``TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``);
- ``browser``: needs Debian's ``chromium`` for Playwright.
"""

from __future__ import annotations

import os
import shutil

import pytest
from django.conf import settings

from tests.support.servers import server_reachable

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_test_url() -> str:
    return os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)


def pytest_collection_modifyitems(config, items) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    on_postgres = engine == "django.db.backends.postgresql"
    postgres_skip = None
    if not on_postgres:
        postgres_skip = pytest.mark.skip(
            reason="needs PostgreSQL as DATABASE_URL (make test runs these in its second pass)"
        )
    else:
        db = settings.DATABASES["default"]
        server = f"postgres://{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        if not server_reachable(server, default_port=5432):
            postgres_skip = pytest.mark.skip(reason=f"PostgreSQL at {db['HOST']} is not reachable")
    redis_skip = None
    if not server_reachable(redis_test_url(), default_port=6379):
        redis_skip = pytest.mark.skip(reason=f"Redis at {redis_test_url()} is not reachable")
    browser_skip = None
    if not shutil.which("chromium"):
        browser_skip = pytest.mark.skip(
            reason="Debian's chromium is not installed (apt-get install chromium)"
        )
    for item in items:
        if postgres_skip and "postgres" in item.keywords:
            item.add_marker(postgres_skip)
        if redis_skip and "redis" in item.keywords:
            item.add_marker(redis_skip)
        if browser_skip and "browser" in item.keywords:
            item.add_marker(browser_skip)


@pytest.fixture
def redis_url() -> str:
    return redis_test_url()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-pass-123")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-pass-123")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="admin", password="admin-pass-123", is_staff=True
    )
