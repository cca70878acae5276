"""A Daphne web server whose database connections go through a test's outage proxy.

with DbOutageProxy.for_url(test_database_url()) as proxy, web_server(proxy=proxy) as web:
    proxy.begin_outage(); httpx.get(f"{web.url}/jobs/")  # 503
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from tests.support.db_outage import DbOutageProxy
from tests.support.live import LiveProcess, free_port, run_server
from tests.support.portal import portal_env, test_database_url

#: What a log must not hold after an outage: a traceback, or an ERROR line (plain or JSON).
_LOUD = re.compile(r"Traceback|\bERROR\b|\"level\": \"ERROR\"")


@contextlib.contextmanager
def web_server(
    *, proxy: DbOutageProxy | None = None, database_url: str | None = None, **env: str
) -> Iterator[LiveProcess]:
    """Daphne serving the portal on ``database_url`` (default: the test database, through
    ``proxy`` when given)."""
    if database_url is None:
        database_url = test_database_url()
        if proxy is not None:
            database_url = proxy.url_for(database_url)
    port = free_port()
    args = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot.asgi:application"]
    environment = portal_env(DATABASE_URL=database_url, COPILOT_RUNNER_IN_PROCESS="false", **env)
    with run_server(args=args, port=port, env=environment, ready_path="/healthz") as live:
        yield live


def loud_lines(output: str) -> list[str]:
    """The lines of a process's output that hold a traceback or an ERROR."""
    return [line for line in output.splitlines() if _LOUD.search(line)]
