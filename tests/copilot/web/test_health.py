"""``/healthz`` and ``/readyz``: answered before Django's host check, HTTPS redirect and login;
``/readyz`` names each check and turns 503 when one fails (copilot.ops.health)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.db import connection

from copilot.ops.health import HealthApp
from copilot.routing import build_application
from copilot.runner.runner import Runner
from copilot.runner.thread import RunnerThread
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env

#: An address a balancer probes by, in no ALLOWED_HOSTS.
PROBE_HOST = "10.0.0.1"

#: Nothing listens on port 9 (discard): a Redis layer there fails at once.
DEAD_REDIS_LAYER = {
    "BACKEND": "channels_redis.core.RedisChannelLayer",
    "CONFIG": {"hosts": ["redis://127.0.0.1:9/0"]},
}


async def _get(app, path: str, *, host: str = PROBE_HOST, method: str = "GET") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
        return await client.request(method, path)


def _portal(**kwargs) -> object:
    return build_application(get_asgi_application(), **kwargs)


async def test_healthz_answers_any_host_over_http_with_no_session(settings):
    settings.ALLOWED_HOSTS = ["portal.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    app = _portal()
    answer = await _get(app, "/healthz")
    assert (answer.status_code, answer.text) == (200, "ok\n")
    assert answer.headers["cache-control"] == "no-store"
    assert "set-cookie" not in answer.headers
    assert (await _get(app, "/healthz", method="HEAD")).status_code == 200
    # The same request anywhere else meets Django's host check (and its HTTPS redirect).
    assert (await _get(app, "/accounts/login/")).status_code == 400
    login = await _get(app, "/accounts/login/", host="portal.example.com")
    assert login.status_code == 301


async def test_healthz_makes_no_database_call():
    # No django_db mark: pytest-django refuses any database access, in any thread.
    assert (await _get(_portal(), "/healthz")).status_code == 200


async def test_other_methods_get_405():
    answer = await _get(_portal(), "/readyz", method="POST")
    assert (answer.status_code, answer.headers["allow"]) == (405, "GET, HEAD")


@pytest.mark.alldb
@pytest.mark.django_db(transaction=True)
async def test_readyz_names_each_check(settings):
    settings.ALLOWED_HOSTS = ["portal.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    answer = await _get(_portal(), "/readyz")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    # No runner in this process (none was passed): no runner check.
    assert answer.json() == {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}}


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_readyz_round_trips_a_message_through_redis(settings, redis_url):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    app = HealthApp(app=None)
    for _ in range(3):  # again and again, as a balancer probes
        assert await app.readiness() == (True, {"database": "ok", "channel_layer": "ok"})


@pytest.mark.django_db(transaction=True)
async def test_readyz_is_503_when_the_channel_layer_does_not_answer(settings):
    settings.CHANNEL_LAYERS = {"default": DEAD_REDIS_LAYER}
    answer = await _get(_portal(), "/readyz")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "fail",
        "checks": {"database": "ok", "channel_layer": "fail"},
    }
    assert "127.0.0.1" not in answer.text and "9" not in answer.text  # nothing about where


@pytest.mark.django_db(transaction=True)
async def test_readyz_checks_the_runner_it_is_given():
    thread = RunnerThread(Runner())
    app = HealthApp(app=None, runner=thread, timeout=5)
    # Not started yet: the runner is not ready.
    assert await app.readiness() == (
        False,
        {"database": "ok", "channel_layer": "ok", "runner": "fail"},
    )
    thread.start()
    try:
        assert thread.runner.started.wait(5)
        ready, checks = await app.readiness()
        assert (ready, checks["runner"]) == (True, "ok")
    finally:
        assert thread.stop()
    ready, checks = await app.readiness()
    assert (ready, checks["runner"]) == (False, "fail")


@pytest.mark.django_db(transaction=True)
async def test_a_runner_whose_loop_is_blocked_times_out():
    thread = RunnerThread(Runner()).start()
    gate = threading.Event()
    try:
        assert thread.runner.started.wait(5)
        loop = thread.runner.loop
        assert loop is not None
        loop.call_soon_threadsafe(gate.wait, 10)  # the runner's loop stops turning
        app = HealthApp(app=None, runner=thread, timeout=0.2)
        ready, checks = await app.readiness()
        assert (ready, checks["runner"]) == (False, "timeout")
    finally:
        gate.set()
        assert thread.stop()


# -- a real server ---------------------------------------------------------------------------


def _daphne(port: int) -> list[str]:
    return ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot.asgi:application"]


def _probe(url: str, path: str) -> httpx.Response:
    return httpx.get(f"{url}{path}", headers={"Host": PROBE_HOST}, timeout=10)


def _ready_within(url: str, *, seconds: float) -> httpx.Response:
    """/readyz until it is 200 (the runner starts with the server, not before it answers)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = _probe(url, "/readyz")
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_daphne_answers_probes_by_ip_and_turns_503_when_its_database_goes():
    if connection.vendor != "sqlite":
        pytest.skip("a copy of the SQLite test database, whose directory the test removes")
    tmp = Path(tempfile.mkdtemp(prefix="readyz-"))
    try:
        copy = tmp / "db.sqlite3"
        source, target = sqlite3.connect(connection.settings_dict["NAME"]), sqlite3.connect(copy)
        try:
            source.backup(target)  # the migrated test database, WAL included
        finally:
            source.close()
            target.close()
        env = portal_env(
            DATABASE_URL=f"sqlite:///{copy}",
            COPILOT_RUNNER_IN_PROCESS="true",
            ALLOWED_HOSTS="portal.example.com",
            SECURE_SSL_REDIRECT="true",
        )
        port = free_port()
        with run_server(args=_daphne(port), port=port, env=env, ready_path="/healthz") as web:
            health = _probe(web.url, "/healthz")
            assert (health.status_code, health.text) == (200, "ok\n")
            assert _probe(web.url, "/accounts/login/").status_code == 400  # Django's host check
            ready = _ready_within(web.url, seconds=15)
            assert ready.status_code == 200, ready.text
            assert ready.json() == {
                "status": "ok",
                "checks": {"database": "ok", "channel_layer": "ok", "runner": "ok"},
            }
            shutil.rmtree(tmp)  # the database's directory goes: SQLite cannot open it
            gone = _probe(web.url, "/readyz")
            assert gone.status_code == 503
            assert gone.json()["checks"] == {
                "database": "fail",
                "channel_layer": "ok",
                "runner": "ok",
            }
            assert str(tmp) not in gone.text
            assert _probe(web.url, "/healthz").status_code == 200  # the process still answers
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.postgres
def test_daphne_on_a_postgresql_database_that_does_not_exist_is_not_ready(settings):
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/no_such_db"
    env = portal_env(DATABASE_URL=url, ALLOWED_HOSTS="portal.example.com")
    port = free_port()
    with run_server(args=_daphne(port), port=port, env=env, ready_path="/healthz") as web:
        assert _probe(web.url, "/healthz").status_code == 200
        ready = _probe(web.url, "/readyz")
        assert ready.status_code == 503
        answer = json.loads(ready.text)
        assert (answer["status"], answer["checks"]["channel_layer"]) == ("fail", "ok")
        # Refused at once ("fail"), or still waited for by the connection pool ("timeout").
        assert answer["checks"]["database"] in ("fail", "timeout")
        assert "no_such_db" not in ready.text
