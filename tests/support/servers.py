"""The servers the tests find on this machine, and the one check of whether they are there.

Tests that need a service skip with a one-line reason when nothing listens where it should
(see tests/conftest.py for the ``postgres``/``redis`` markers). The proxy and error-mapping
tests talk to a PostgreSQL server with their own plain connections, whatever the default
database of the pass: :func:`postgres_server_url` names it and :data:`needs_postgres_server`
skips them when it is not there.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

__all__ = [
    "DEFAULT_POSTGRES_SERVER_URL",
    "needs_postgres_server",
    "postgres_server_url",
    "server_reachable",
]

#: The local server's maintenance database, when ``TEST_POSTGRES_URL`` is not set.
DEFAULT_POSTGRES_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def server_reachable(url: str, *, default_port: int) -> bool:
    """Whether something listens where ``url`` points (``default_port`` when it names none):
    a TCP connect, so a missing service is a skip reason rather than a slow failure."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def postgres_server_url() -> str:
    """The PostgreSQL server of ``TEST_POSTGRES_URL`` (default: the local one)."""
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_SERVER_URL)


#: Skips a test (or, as ``pytestmark``, a module) when no PostgreSQL answers at
#: :func:`postgres_server_url`; checked once, when this module is imported.
needs_postgres_server = pytest.mark.skipif(
    not server_reachable(postgres_server_url(), default_port=5432),
    reason="no PostgreSQL at TEST_POSTGRES_URL",
)
