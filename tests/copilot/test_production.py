"""Deployable behind TLS and safe by default: what a server with DEBUG off accepts and refuses.

The live tests start a real ``daphne copilot.asgi:application`` on 127.0.0.1 with the
environment docs/deploy.md's production checklist gives, and send the headers a TLS proxy
sends (``Host``, ``X-Forwarded-Proto: https``) themselves. httpx keeps no Secure cookie over
http, so the cookies are read from ``Set-Cookie`` and sent back by hand.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from http.cookies import Morsel, SimpleCookie
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.sessions.models import Session
from django.core.asgi import get_asgi_application

from copilot.config import ConfigError, load
from copilot.ops.startup import demo_login_works, refuse_demo_login
from copilot.routing import build_application
from tests.support.live import LiveProcess, free_port, run_server
from tests.support.portal import ROOT, portal_env

DEPLOY_DOC = ROOT / "docs" / "deploy.md"
HOST = "portal.example.com"  # the checklist's ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS
PROXY = {"Host": HOST, "X-Forwarded-Proto": "https"}  # what the TLS proxy sends
TLS_SETTINGS = (
    "CSRF_TRUSTED_ORIGINS",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
)
PASSWORD = "erin-pass-123"
START_SECONDS = 60


def documented_environment(*, secret_key: str) -> dict[str, str]:
    """The ``sh`` block of docs/deploy.md's "Production checklist", with ``secret_key``."""
    section = DEPLOY_DOC.read_text().split("\n## Production checklist\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    env = {}
    for line in block.splitlines():
        setting = line.split("#", 1)[0].strip()
        if setting:
            name, _, value = setting.partition("=")
            env[name] = value
    env["SECRET_KEY"] = secret_key
    return env


def documented_secret_key() -> str:
    """A key made by the command the checklist gives beside ``SECRET_KEY``."""
    section = DEPLOY_DOC.read_text().split("\n## Production checklist\n", 1)[1]
    command = re.search(r"^SECRET_KEY=\S*\s+# python -c '([^']+)'$", section, re.M)
    assert command, "the checklist no longer says how to make a SECRET_KEY"
    made = subprocess.run(
        [sys.executable, "-c", command.group(1)], capture_output=True, text=True, check=True
    )
    return made.stdout.strip()


def bare_env(**env: str) -> dict[str, str]:
    """A process environment with no setting but ``env`` (the suite's own are left out)."""
    kept = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    return {**kept, "DJANGO_SETTINGS_MODULE": "copilot.settings", **env}


def run(args: list[str], *, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
    )


def daphne_args(port: int) -> list[str]:
    return ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot.asgi:application"]


@contextlib.contextmanager
def daphne(*, env: dict[str, str]) -> Iterator[LiveProcess]:
    port = free_port()
    with run_server(
        args=daphne_args(port), port=port, env=env, ready_path="/accounts/login/"
    ) as web:
        yield web


def tls_server_env() -> dict[str, str]:
    """The documented TLS deployment, on the test's database (and key, for its sessions)."""
    env = portal_env()
    env.update(documented_environment(secret_key=env["SECRET_KEY"]))
    env["AGENT_GENERATOR_URL"] = "http://127.0.0.1:9"  # no job runs: nothing is called
    return env


def cookies(response: httpx.Response) -> dict[str, Morsel]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return dict(jar)


def form_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def log_in(
    base_url: str, *, username: str, password: str, headers: dict[str, str], origin: str
) -> httpx.Response:
    """GET the login form, then POST it as a browser would (CSRF cookie, token and Origin)."""
    page = httpx.get(f"{base_url}/accounts/login/", headers=headers)
    assert page.status_code == 200, page.text
    csrf = cookies(page)["csrftoken"]
    return httpx.post(
        f"{base_url}/accounts/login/",
        headers={**headers, "Origin": origin, "Cookie": f"csrftoken={csrf.value}"},
        data={
            "csrfmiddlewaretoken": form_token(page),
            "username": username,
            "password": password,
            "next": "/jobs/",
        },
    )


def pbkdf2(password: str) -> str:
    """A hash the portal's processes check (the suite's MD5 hasher is not among theirs)."""
    hasher = PBKDF2PasswordHasher()
    return hasher.encode(password, hasher.salt(), iterations=1000)


# -- the settings -----------------------------------------------------------------------------


def test_with_debug_on_nothing_asks_for_https(tmp_path):
    config = load({"DEBUG": "true"}, base_dir=tmp_path)
    assert config.csrf_trusted_origins == []
    assert config.secure_proxy_ssl_header is None  # no header is trusted
    assert config.secure_ssl_redirect is False
    assert config.secure_hsts_seconds == 0
    assert (config.secure_hsts_include_subdomains, config.secure_hsts_preload) == (False, False)
    assert (config.session_cookie_secure, config.csrf_cookie_secure) == (False, False)


def test_with_debug_off_cookies_are_secure_unless_turned_off(tmp_path):
    base = {"SECRET_KEY": "k" * 50, "AGENT_GENERATOR_URL": "https://generator"}
    production = load(base, base_dir=tmp_path)
    plain_http = load(
        {**base, "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "no"}, base_dir=tmp_path
    )
    development = load(
        {"DEBUG": "1", "SESSION_COOKIE_SECURE": "on", "CSRF_COOKIE_SECURE": "true"},
        base_dir=tmp_path,
    )
    assert (production.session_cookie_secure, production.csrf_cookie_secure) == (True, True)
    assert production.secure_proxy_ssl_header is None
    assert (plain_http.session_cookie_secure, plain_http.csrf_cookie_secure) == (False, False)
    assert (development.session_cookie_secure, development.csrf_cookie_secure) == (True, True)


def test_the_documented_environment_reads_as_django_settings(tmp_path):
    env = documented_environment(secret_key=secrets.token_urlsafe(50))
    assert env["DEBUG"] == "false"
    assert set(TLS_SETTINGS) <= set(env)
    config = load(env, base_dir=tmp_path)
    assert config.csrf_trusted_origins == [f"https://{HOST}"]
    assert config.secure_proxy_ssl_header == ("HTTP_X_FORWARDED_PROTO", "https")
    assert config.secure_ssl_redirect is True
    assert config.secure_hsts_seconds == 31_536_000
    assert (config.secure_hsts_include_subdomains, config.secure_hsts_preload) == (True, True)
    assert (config.session_cookie_secure, config.csrf_cookie_secure) == (True, True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "https://a.example, http://b.example:8080",
            ["https://a.example", "http://b.example:8080"],
        ),
        ("https://*.example.com", ["https://*.example.com"]),  # Django: every subdomain
        ("http://[::1]:8000,", ["http://[::1]:8000"]),
        ("", []),
    ],
)
def test_trusted_origins_accepted(tmp_path, raw, expected):
    config = load({"DEBUG": "1", "CSRF_TRUSTED_ORIGINS": raw}, base_dir=tmp_path)
    assert config.csrf_trusted_origins == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("X-Forwarded-Proto", ("HTTP_X_FORWARDED_PROTO", "https")),
        ("x-forwarded-proto", ("HTTP_X_FORWARDED_PROTO", "https")),
        ("X-Forwarded-Ssl-2", ("HTTP_X_FORWARDED_SSL_2", "https")),
        (" ", None),
    ],
)
def test_the_proxy_header_is_given_by_its_name(tmp_path, raw, expected):
    config = load({"DEBUG": "1", "SECURE_PROXY_SSL_HEADER": raw}, base_dir=tmp_path)
    assert config.secure_proxy_ssl_header == expected


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("CSRF_TRUSTED_ORIGINS", "portal.example.com", "is not an origin"),  # no scheme
        ("CSRF_TRUSTED_ORIGINS", "https://portal.example.com/", "is not an origin"),
        ("CSRF_TRUSTED_ORIGINS", "https://a.example,https://b.example/jobs", "'https://b.example/jobs'"),
        ("CSRF_TRUSTED_ORIGINS", "ftp://portal.example.com", "is not an origin"),
        ("CSRF_TRUSTED_ORIGINS", "https://", "is not an origin"),
        ("CSRF_TRUSTED_ORIGINS", "https://me@portal.example.com", "is not an origin"),
        ("CSRF_TRUSTED_ORIGINS", "https://portal.example.com:https", "is not an origin"),
        ("CSRF_TRUSTED_ORIGINS", "https://portal example.com", "is not an origin"),
        ("SECURE_PROXY_SSL_HEADER", "HTTP_X_FORWARDED_PROTO", "is not a header name"),
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto: https", "is not a header name"),
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto,https", "is not a header name"),
        ("SECURE_SSL_REDIRECT", "always", "is not a boolean"),
        ("SECURE_HSTS_SECONDS", "-1", "at least 0"),
        ("SECURE_HSTS_SECONDS", "1y", "is not a whole number"),
        ("SECURE_HSTS_SECONDS", "3600.5", "is not a whole number"),
        ("SECURE_HSTS_INCLUDE_SUBDOMAINS", "all", "is not a boolean"),
        ("SECURE_HSTS_PRELOAD", "2", "is not a boolean"),
        ("SESSION_COOKIE_SECURE", "secure", "is not a boolean"),
        ("CSRF_COOKIE_SECURE", "https", "is not a boolean"),
    ],
)  # fmt: skip
def test_bad_tls_settings_are_refused_with_one_line_naming_the_variable(
    tmp_path, name, raw, message
):
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        load({"DEBUG": "1", name: raw}, base_dir=tmp_path)
    assert str(refused.value).startswith(name)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("url", [None, "embedded", " embedded/ "])
def test_the_embedded_agent_generator_is_refused_with_debug_off(tmp_path, url):
    env = {"SECRET_KEY": "k" * 50} | ({"AGENT_GENERATOR_URL": url} if url else {})
    with pytest.raises(ConfigError) as refused:
        load(env, base_dir=tmp_path)
    message = str(refused.value)
    assert message.startswith("AGENT_GENERATOR_URL is 'embedded' (the default) and DEBUG is off")
    assert "python -m agent_generator.reference" in message
    assert "\n" not in message


def test_the_embedded_agent_generator_stays_the_default_with_debug_on(tmp_path):
    assert load({"DEBUG": "true"}, base_dir=tmp_path).agent_generator_url == "embedded"


# -- /agent-generator/ ----------------------------------------------------------------------


async def _get(app, path: str, *, host: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
        return await client.get(path)


async def test_the_reference_service_is_not_mounted_with_debug_off(settings):
    settings.DEBUG = False
    settings.AGENT_GENERATOR_URL = "embedded"  # refused at start-up; and were it not
    settings.ALLOWED_HOSTS = [HOST]
    app = build_application(get_asgi_application())
    answer = await _get(app, "/agent-generator/health", host=HOST)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")  # Django's, not the service's


async def test_with_debug_on_it_answers_only_the_allowed_hosts(settings):
    settings.DEBUG = True
    settings.AGENT_GENERATOR_URL = "embedded"
    settings.ALLOWED_HOSTS = [HOST]
    app = build_application(get_asgi_application())
    assert (await _get(app, "/agent-generator/health", host=HOST)).status_code == 200
    assert (await _get(app, "/agent-generator/health", host=f"{HOST}:8000")).status_code == 200
    for host in ("attacker.example", "127.0.0.1", f"{HOST}.attacker.example"):
        refused = await _get(app, "/agent-generator/health", host=host)
        assert (refused.status_code, refused.text) == (400, "Bad Request: Host not allowed\n")


async def test_with_debug_on_and_no_allowed_hosts_it_answers_localhost_only(settings):
    settings.DEBUG = True
    settings.AGENT_GENERATOR_URL = "embedded"
    settings.ALLOWED_HOSTS = []  # Django's rule: with DEBUG, localhost's names
    app = build_application(get_asgi_application())
    assert (await _get(app, "/agent-generator/health", host="localhost")).status_code == 200
    assert (await _get(app, "/agent-generator/health", host="127.0.0.1:8000")).status_code == 200
    assert (await _get(app, "/agent-generator/health", host="rebound.example")).status_code == 400


# -- the demo login -------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_demo_login_works_only_with_its_password(django_user_model):
    assert demo_login_works() is False
    demo = django_user_model.objects.create_user(username="demo", password="demo")
    assert demo_login_works() is True
    demo.set_password("a-better-pass-123")
    demo.save()
    assert demo_login_works() is False
    django_user_model.objects.create_user(username="Demo", password="demo")
    assert demo_login_works() is False  # another user: usernames are exact


@pytest.mark.django_db(transaction=True)
def test_with_debug_off_the_demo_login_stops_start_up(settings, django_user_model):
    django_user_model.objects.create_user(username="demo", password="demo")
    settings.DEBUG = True
    refuse_demo_login()  # make run's own
    settings.DEBUG = False
    with pytest.raises(ConfigError) as refused:
        refuse_demo_login()
    assert "python manage.py changepassword demo" in str(refused.value)
    assert "\n" not in str(refused.value)


# -- processes ------------------------------------------------------------------------------


@pytest.mark.slow
def test_check_deploy_is_clean_with_the_documented_environment():
    env = documented_environment(secret_key=documented_secret_key())
    result = run(["manage.py", "check", "--deploy", "--fail-level", "DEBUG"], env=bare_env(**env))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("System check identified no issues"), result.stdout
    assert result.stderr == ""


@pytest.mark.slow
def test_check_deploy_notices_what_the_checklist_leaves_out():
    env = documented_environment(secret_key=documented_secret_key())
    for name in ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"):
        del env[name]
    env["SECRET_KEY"] = "too-short"
    result = run(["manage.py", "check", "--deploy"], env=bare_env(**env))
    for warning in ("security.W004", "security.W008", "security.W009"):
        assert warning in result.stderr, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "url"),
    [
        (["manage.py", "check"], None),
        (["manage.py", "check"], "embedded"),
        (["-c", "import copilot.asgi"], None),
        (daphne_args(0), "embedded"),
    ],
)
def test_a_start_with_debug_off_and_the_embedded_service_exits_with_one_line(args, url):
    env = {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50)}
    if url is not None:
        env["AGENT_GENERATOR_URL"] = url
    result = run(args, env=bare_env(**env))
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    assert lines[0].startswith("configuration error: AGENT_GENERATOR_URL is 'embedded'")
    assert "python -m agent_generator.reference" in lines[0]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_login_through_the_tls_proxy_gets_secure_cookies(django_user_model):
    django_user_model.objects.create(username="erin", password=pbkdf2(PASSWORD))
    with daphne(env=tls_server_env()) as web:
        page = httpx.get(f"{web.url}/accounts/login/", headers=PROXY)
        assert page.status_code == 200
        hsts = page.headers["strict-transport-security"]
        assert hsts == "max-age=31536000; includeSubDomains; preload"
        assert cookies(page)["csrftoken"]["secure"]

        answer = log_in(
            web.url, username="erin", password=PASSWORD, headers=PROXY, origin=f"https://{HOST}"
        )
        assert answer.status_code == 302, answer.text
        assert answer.headers["location"] == "/jobs/"
        sent = cookies(answer)
        assert sent["sessionid"]["secure"] and sent["sessionid"]["httponly"]
        assert sent["csrftoken"]["secure"]  # rotated at login

        session = f"sessionid={sent['sessionid'].value}"
        jobs = httpx.get(f"{web.url}/jobs/", headers={**PROXY, "Cookie": session})
        assert jobs.status_code == 200
        assert "erin" in jobs.text


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_without_the_trusted_header_requests_are_redirected_to_https(django_user_model):
    django_user_model.objects.create(username="erin", password=pbkdf2(PASSWORD))
    login = "/accounts/login/?next=/jobs/"
    with daphne(env=tls_server_env()) as web:
        for headers in (
            {"Host": HOST},  # plain http, no proxy
            {"Host": HOST, "X-Forwarded-Proto": "http"},
            {"Host": HOST, "X-Forwarded-Protocol": "https"},  # not the header named
            {"Host": HOST, "Forwarded": "proto=https"},
        ):
            page = httpx.get(f"{web.url}{login}", headers=headers)
            assert page.status_code == 301, headers
            assert page.headers["location"] == f"https://{HOST}{login}"
            assert "set-cookie" not in page.headers
            post = httpx.post(
                f"{web.url}{login}",
                headers={**headers, "Origin": f"https://{HOST}"},
                data={"username": "erin", "password": PASSWORD},
            )
            assert post.status_code == 301, headers
            assert "set-cookie" not in post.headers

        # Over "https", a post from another site's page is refused (CSRF's origin check).
        foreign = log_in(
            web.url,
            username="erin",
            password=PASSWORD,
            headers=PROXY,
            origin="https://attacker.example",
        )
        assert foreign.status_code == 403

        # The reference service is a development tool: with DEBUG off it is not there.
        assert httpx.get(f"{web.url}/agent-generator/health", headers=PROXY).status_code == 404
    assert not Session.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_demo_demo_never_logs_in_on_a_server_with_debug_off(django_user_model):
    demo = django_user_model.objects.create(
        username="demo", password=pbkdf2("demo"), is_staff=True, is_superuser=True
    )
    env = portal_env(DEBUG="false", COPILOT_RUNNER_IN_PROCESS="true")
    for args in (daphne_args(free_port()), ["manage.py", "runworker", "agent-generator"]):
        result = run(args, env=env)
        assert result.returncode == 1, args
        lines = (result.stdout + result.stderr).strip().splitlines()
        assert len(lines) == 1, result.stdout + result.stderr
        assert lines[0].startswith(
            "configuration error: DEBUG is off and the demo login (demo / demo) exists"
        )
        assert "python manage.py changepassword demo" in lines[0]

    # Once its password is changed the server starts, and demo / demo is just a wrong password.
    demo.password = pbkdf2(PASSWORD)
    demo.save(update_fields=["password"])
    with daphne(env=env) as web:
        refused = log_in(web.url, username="demo", password="demo", headers={}, origin=web.url)
        assert refused.status_code == 200  # the form again, with its error
        assert "Please enter a correct username and password" in refused.text
        assert "sessionid" not in cookies(refused)
        allowed = log_in(web.url, username="demo", password=PASSWORD, headers={}, origin=web.url)
        assert allowed.status_code == 302


@pytest.mark.slow
def test_a_database_not_migrated_yet_does_not_stop_start_up(tmp_path: Path):
    env = portal_env(
        DEBUG="false",
        DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}",
        COPILOT_RUNNER_IN_PROCESS="false",
    )
    result = run(["-c", "import copilot.asgi"], env=env)
    assert result.returncode == 0, result.stderr
    assert "demo login check skipped" in result.stderr
