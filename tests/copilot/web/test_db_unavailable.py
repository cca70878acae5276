"""Pages and the API while the database is away: 503 with Retry-After, never a 500 or a
traceback, and 200 again once it is back, with no restart (copilot.web.db_unavailable).

Real processes: Daphne on PostgreSQL through the outage proxy (tests/support/db_outage.py);
on SQLite, the same server while the test holds the database's write lock (for as long
as the writes take to give up, no longer).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from django.test import Client

from copilot.jobs import services
from copilot.jobs.db_errors import RETRY_AFTER_SECONDS
from copilot.jobs.db_errors import UNAVAILABLE_DETAIL as DETAIL
from copilot.jobs.tokens import api_token_create
from tests.support import portal
from tests.support.db_outage import DbOutageProxy, database_cut
from tests.support.web_outage import loud_lines, web_server

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GOAL = "Every morning at 8am, fetch the top tech news and email a summary to me@example.com"


def _login(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def _assert_unavailable_page(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.headers["content-type"].startswith("text/html")
    assert "Service unavailable" in response.text and DETAIL in response.text
    assert "Traceback" not in response.text


def _assert_unavailable_json(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.json() == {"detail": DETAIL}


@pytest.mark.postgres
def test_pages_and_the_api_answer_503_during_a_postgresql_outage_then_200(user):
    # Hashed as the server's settings can check (the suite's own MD5 is test-only).
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode("alice-pass-123", hasher.salt())
    user.save(update_fields=["password"])
    job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
    cookie = _login(user)
    _, key = api_token_create(user=user)
    bearer = {"Authorization": f"Bearer {key}"}
    with (
        DbOutageProxy.for_url(portal.test_database_url()) as proxy,
        web_server(proxy=proxy) as web,
        httpx.Client(base_url=web.url, timeout=15) as http,
        httpx.Client(base_url=web.url, timeout=15) as anonymous,
    ):
        http.cookies.set("sessionid", cookie)
        assert http.get("/jobs/").status_code == 200
        assert http.get("/api/jobs/", headers=bearer).status_code == 200
        assert anonymous.get("/accounts/login/").status_code == 200
        login = {
            "username": "alice",
            "password": "alice-pass-123",
            "csrfmiddlewaretoken": anonymous.cookies["csrftoken"],
        }
        proxy.begin_outage()
        try:
            # All at once (each waits for the pool's timeout): pages (the session's user is
            # read before the view; the login form's POST asks axes and the user table), the
            # API with a token (django-ninja's handler) and with the session, the stream
            # before it streams anything, and the balancer's probes.
            with ThreadPoolExecutor(10) as pool:
                calls = {
                    "list": pool.submit(http.get, "/jobs/"),
                    "detail": pool.submit(http.get, f"/jobs/{job.id}/"),
                    "login": pool.submit(anonymous.post, "/accounts/login/", data=login),
                    "api token": pool.submit(http.get, "/api/jobs/", headers=bearer),
                    "api job": pool.submit(http.get, f"/api/jobs/{job.id}/", headers=bearer),
                    "api session": pool.submit(http.get, "/api/jobs/"),
                    "stream": pool.submit(http.get, f"/jobs/{job.id}/events"),
                    "healthz": pool.submit(http.get, "/healthz"),
                    "readyz": pool.submit(http.get, "/readyz"),
                }
                answers = {name: call.result() for name, call in calls.items()}
        finally:
            proxy.end_outage()
        for name in ("list", "detail", "login"):
            _assert_unavailable_page(answers[name])
        for name in ("api token", "api job", "api session"):
            _assert_unavailable_json(answers[name])
        assert answers["stream"].status_code == 503
        assert answers["stream"].headers["retry-after"] == str(RETRY_AFTER_SECONDS)
        assert answers["healthz"].status_code == 200
        assert answers["readyz"].status_code == 503
        assert proxy.refused > 0
        # Back: the very next requests succeed, on new connections, with no restart.
        assert http.get("/jobs/").status_code == 200
        assert http.get(f"/jobs/{job.id}/").status_code == 200
        assert http.get("/api/jobs/", headers=bearer).status_code == 200
        assert http.get("/readyz").status_code == 200
        assert anonymous.post("/accounts/login/", data=login).status_code == 302
        assert web.poll() is None
        output = web.output()
    assert loud_lines(output) == []
    assert output.count("database unavailable, answered 503") == 6


def test_writes_answer_503_while_sqlite_s_write_lock_is_held_past_the_busy_timeout(user):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock (the PostgreSQL pass runs the proxy test instead)")
    job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
    cookie = _login(user)
    _, key = api_token_create(user=user)
    bearer = {"Authorization": f"Bearer {key}"}
    body = {"kind": "decompose", "description": GOAL}
    with web_server() as web, httpx.Client(base_url=web.url, timeout=60) as http:
        http.cookies.set("sessionid", cookie)
        assert http.get(f"/jobs/{job.id}/").status_code == 200
        csrf = http.cookies["csrftoken"]
        with database_cut(portal.test_database_url()) as cut:
            end = cut.begin()
            try:
                with ThreadPoolExecutor(2) as pool:
                    cancel = pool.submit(
                        http.post,
                        f"/jobs/{job.id}/cancel/",
                        headers={"X-CSRFToken": csrf},
                    )
                    submit = pool.submit(http.post, "/api/jobs/", json=body, headers=bearer)
                    # Reads go on meanwhile (WAL): only writes wait for the lock.
                    assert http.get(f"/jobs/{job.id}/").status_code == 200
                    cancelled, submitted = cancel.result(), submit.result()
            finally:
                end()
        _assert_unavailable_page(cancelled)
        _assert_unavailable_json(submitted)
        # The lock is gone: the same writes succeed, with no restart.
        assert (
            http.post(f"/jobs/{job.id}/cancel/", headers={"X-CSRFToken": csrf}).status_code == 302
        )
        assert http.post("/api/jobs/", json=body, headers=bearer).status_code == 201
        assert web.poll() is None
        output = web.output()
    assert loud_lines(output) == []
    assert output.count("database unavailable, answered 503") == 2
