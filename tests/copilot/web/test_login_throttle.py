"""Login throttling (django-axes): a username is locked after repeated failures, by name only.

Both login forms (the portal's and the admin's) count; the lock refuses even the right
password, shows the login page again with a note (status 429), lets other users in, lasts the
cool-off, and is lifted by ``axes_reset_username`` or the admin's Lift action. The JSON API
and sessions already logged in are not login forms and are left alone.
"""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import httpx
import pytest
from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from django.db.models import F
from django.test import Client
from django.urls import reverse

from copilot.config import ConfigError, load
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env

PORTAL_LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/?next=/admin/"
LOGGED_IN_AT = {PORTAL_LOGIN: "/", ADMIN_LOGIN: "/admin/"}
FORM_ACTION = {PORTAL_LOGIN: 'action="/accounts/login/"', ADMIN_LOGIN: f'action="{ADMIN_LOGIN}"'}
PASSWORDS = {"alice": "alice-pass-123", "bob": "bob-pass-123"}
NOTE = 'id="lockout-note"'


def attempt(client: Client, url: str, username: str, password: str | None = None):
    """One POST to a login form; ``password`` None sends the right one."""
    right = PASSWORDS[username] if password is None else password
    return client.post(url, {"username": username, "password": right})


def fail(client: Client, url: str, username: str, times: int):
    """``times`` wrong passwords for ``username``; the last response."""
    for _ in range(times):
        response = attempt(client, url, username, "wrong-password")
    return response


def logged_in_as(client: Client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    if user_id is None:
        return None
    return get_user_model().objects.get(pk=user_id).get_username()


@pytest.fixture
def users(user, other_user):
    """alice and bob, staff both, so that either login form takes them."""
    get_user_model().objects.filter(pk__in=[user.pk, other_user.pk]).update(is_staff=True)
    return user, other_user


# --- the lock -------------------------------------------------------------------------------


@pytest.mark.alldb
@pytest.mark.django_db
@pytest.mark.parametrize("url", [PORTAL_LOGIN, ADMIN_LOGIN], ids=["portal", "admin"])
def test_five_failures_lock_the_username_even_with_the_right_password(users, url):
    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 5  # the default (COPILOT_LOGIN_FAILURE_LIMIT)
    client = Client(REMOTE_ADDR="10.0.0.1")
    below = fail(client, url, "alice", limit - 1)
    assert below.status_code == 200 and "errornote" in below.content.decode()
    assert NOTE not in below.content.decode()

    at_limit = fail(client, url, "alice", 1)
    assert at_limit.status_code == 429 and NOTE in at_limit.content.decode()

    # The right password, from another address too (the lock is the username's, not an IP's).
    elsewhere = Client(REMOTE_ADDR="10.0.0.2")
    refused = attempt(elsewhere, url, "alice")
    body = refused.content.decode()
    assert refused.status_code == 429
    assert logged_in_as(elsewhere) is None
    assert NOTE in body and "“alice”" in body
    assert "for the next 15 minutes, even with the right password" in body
    assert 'id="login-form"' in body and 'value="alice"' in body  # the login page, filled in
    assert FORM_ACTION[url] in body  # posts where the refused login was posted
    assert 14 * 60 < int(refused["Retry-After"]) <= 15 * 60

    # bob logs in meanwhile, from the very client that locked alice out.
    welcomed = attempt(client, url, "bob")
    assert (welcomed.status_code, welcomed["Location"]) == (302, LOGGED_IN_AT[url])
    assert logged_in_as(client) == "bob"

    out = StringIO()
    call_command("axes_reset_username", "alice", stdout=out)
    assert "1 attempts removed" in out.getvalue()
    back = attempt(elsewhere, url, "alice")
    assert (back.status_code, back["Location"]) == (302, LOGGED_IN_AT[url])
    assert logged_in_as(elsewhere) == "alice"


@pytest.mark.django_db
def test_the_portal_and_admin_forms_count_together(users):
    client = Client()
    fail(client, PORTAL_LOGIN, "alice", 3)
    assert fail(client, ADMIN_LOGIN, "alice", 1).status_code == 200
    refused = fail(client, ADMIN_LOGIN, "alice", 1)
    assert refused.status_code == 429 and NOTE in refused.content.decode()
    assert attempt(client, PORTAL_LOGIN, "alice").status_code == 429


@pytest.mark.django_db
def test_a_success_below_the_limit_starts_the_count_again(users):
    client = Client()
    fail(client, PORTAL_LOGIN, "alice", 4)
    assert attempt(client, PORTAL_LOGIN, "alice").status_code == 302
    assert logged_in_as(client) == "alice"
    assert not AccessAttempt.objects.filter(username="alice").exists()  # AXES_RESET_ON_SUCCESS
    client = Client()
    assert fail(client, PORTAL_LOGIN, "alice", 4).status_code == 200  # four fresh tries
    assert attempt(client, PORTAL_LOGIN, "alice").status_code == 302


@pytest.mark.django_db
def test_tries_while_locked_are_not_counted_and_the_lock_ends_after_the_cool_off(users):
    client = Client()
    fail(client, PORTAL_LOGIN, "alice", 5)
    locked_at = AccessAttempt.objects.get(username="alice").attempt_time
    fail(client, PORTAL_LOGIN, "alice", 3)
    assert attempt(client, PORTAL_LOGIN, "alice").status_code == 429
    row = AccessAttempt.objects.get(username="alice")
    assert (row.failures_since_start, row.attempt_time) == (5, locked_at)  # the end stays put

    cool_off = settings.AXES_COOLOFF_TIME
    assert cool_off == timedelta(minutes=15)  # the default (COPILOT_LOGIN_COOLOFF_MINUTES)
    # The failures as they will look a minute before the end of the cool-off: still locked.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - cool_off + timedelta(minutes=1))
    still = attempt(client, PORTAL_LOGIN, "alice")
    assert still.status_code == 429
    assert "for the next 1 minute," in still.content.decode()
    assert int(still["Retry-After"]) <= 60
    # ... and once it has passed: the right password logs in.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=1, seconds=1))
    assert attempt(client, PORTAL_LOGIN, "alice").status_code == 302
    assert logged_in_as(client) == "alice"


@pytest.mark.django_db
def test_an_unknown_username_is_locked_the_same_way(users):
    client = Client()
    nobody = {"username": "nobody", "password": "x"}
    for _ in range(4):
        assert client.post(PORTAL_LOGIN, nobody).status_code == 200
    refused = client.post(PORTAL_LOGIN, nobody)
    assert refused.status_code == 429 and "“nobody”" in refused.content.decode()


# --- what is not a login form ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_lock_leaves_open_sessions_and_api_tokens_alone(users):
    alice, _ = users
    session = Client()
    session.force_login(alice)
    out = StringIO()
    call_command("create_api_token", "--user", "alice", stdout=out)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().strip()}")

    fail(Client(), PORTAL_LOGIN, "alice", 5)
    assert attempt(Client(), PORTAL_LOGIN, "alice").status_code == 429

    assert session.get("/jobs/").status_code == 200
    assert session.get("/api/jobs/").status_code == 200
    assert api.get("/api/jobs/").status_code == 200
    # A wrong token is the API's own 401, and counts for no one.
    wrong = Client(HTTP_AUTHORIZATION="Bearer not-a-key").get("/api/jobs/")
    assert wrong.status_code == 401 and wrong.json()["detail"] == "Invalid token."
    assert AccessAttempt.objects.get(username="alice").failures_since_start == 5


# --- operators ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_see_lockouts_in_the_admin_and_lift_them(users, staff_user, django_user_model):
    fail(Client(), PORTAL_LOGIN, "alice", 5)
    fail(Client(), PORTAL_LOGIN, "bob", 2)
    attempt(Client(), PORTAL_LOGIN, "bob")  # a success: bob's failures go, his login is logged

    admin = Client()
    admin.force_login(staff_user)  # staff, not a superuser, with no model permissions
    assert "Access attempts" in admin.get(reverse("admin:index")).content.decode()
    url = reverse("admin:axes_accessattempt_changelist")
    page = admin.get(url)
    assert page.status_code == 200
    rows = page.context["cl"].result_list
    assert [(r.username, r.failures_since_start) for r in rows] == [("alice", 5)]
    assert 'alt="True"' in page.content.decode()  # the "locked out" column
    assert admin.get(url, {"q": "bob"}).context["cl"].result_count == 0
    detail = admin.get(reverse("admin:axes_accessattempt_change", args=[rows[0].pk]))
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    logins = admin.get(reverse("admin:axes_accesslog_changelist"))
    assert {r.username for r in logins.context["cl"].result_list} == {"bob", "admin"}

    lifted = admin.post(
        url, {"action": "lift_lockouts", "_selected_action": [rows[0].pk]}, follow=True
    )
    assert "Lifted: alice." in lifted.content.decode()
    assert not AccessAttempt.objects.exists()
    assert attempt(Client(), PORTAL_LOGIN, "alice").status_code == 302
    assert AccessLog.objects.filter(username="alice").exists()

    # Not staff: kept out.
    outsider = Client()
    outsider.force_login(django_user_model.objects.create_user(username="carol", password="c"))
    response = outsider.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_axes_reset_username_with_no_attempts_says_so(users):
    out = StringIO()
    call_command("axes_reset_username", "alice", stdout=out)
    assert out.getvalue().strip() == "No attempts found."


# --- settings -------------------------------------------------------------------------------


def test_limit_and_cool_off_come_from_the_environment(tmp_path):
    default = load({"DEBUG": "1"}, base_dir=tmp_path)
    assert (default.login_failure_limit, default.login_cooloff_minutes) == (5, 15)
    chosen = load(
        {
            "DEBUG": "1",
            "COPILOT_LOGIN_FAILURE_LIMIT": "10",
            "COPILOT_LOGIN_COOLOFF_MINUTES": "2.5",
        },
        base_dir=tmp_path,
    )
    assert (chosen.login_failure_limit, chosen.login_cooloff_minutes) == (10, 2.5)


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("COPILOT_LOGIN_FAILURE_LIMIT", "0", "at least 1"),
        ("COPILOT_LOGIN_FAILURE_LIMIT", "-3", "at least 1"),
        ("COPILOT_LOGIN_FAILURE_LIMIT", "2.5", "is not a whole number"),
        ("COPILOT_LOGIN_FAILURE_LIMIT", "five", "is not a whole number"),
        ("COPILOT_LOGIN_COOLOFF_MINUTES", "0", "at least 0.1"),
        ("COPILOT_LOGIN_COOLOFF_MINUTES", "-15", "at least 0.1"),
        ("COPILOT_LOGIN_COOLOFF_MINUTES", "15m", "is not a number"),
        ("COPILOT_LOGIN_COOLOFF_MINUTES", "inf", "finite"),
        ("COPILOT_LOGIN_COOLOFF_MINUTES", "nan", "finite"),
    ],
)
def test_bad_values_are_refused_with_one_line(tmp_path, variable, raw, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        load({"DEBUG": "1", variable: raw}, base_dir=tmp_path)
    assert str(refused.value).startswith(f"{variable}={raw!r}")
    assert "\n" not in str(refused.value)


# --- a real server --------------------------------------------------------------------------


def live_attempt(client: httpx.Client, username: str, password: str) -> httpx.Response:
    form = client.get(PORTAL_LOGIN)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, form.text
    data = {"csrfmiddlewaretoken": token.group(1), "username": username, "password": password}
    return client.post(PORTAL_LOGIN, data=data)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_lock_through_daphne(users):
    # The server has Django's own hashers, not the tests' MD5: store hashes it can check.
    for person in users:
        salt = "salt" + person.username
        person.password = PBKDF2PasswordHasher().encode(PASSWORDS[person.username], salt, 1000)
        person.save(update_fields=["password"])
    port = free_port()
    daphne = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot.asgi:application"]
    env = portal_env(COPILOT_RUNNER_IN_PROCESS="false", COPILOT_LOGIN_FAILURE_LIMIT="3")
    with run_server(args=daphne, port=port, env=env, ready_path=PORTAL_LOGIN) as web:
        with httpx.Client(base_url=web.url) as attacker:
            statuses = [live_attempt(attacker, "alice", "wrong").status_code for _ in range(3)]
            assert statuses == [200, 200, 429]
        with httpx.Client(base_url=web.url) as alice:
            refused = live_attempt(alice, "alice", PASSWORDS["alice"])
            assert refused.status_code == 429
            assert NOTE in refused.text and "“alice”" in refused.text
            assert alice.get("/jobs/").status_code == 302  # to the login page
        with httpx.Client(base_url=web.url) as bob:
            welcomed = live_attempt(bob, "bob", PASSWORDS["bob"])
            assert (welcomed.status_code, welcomed.headers["location"]) == (302, "/")
            assert bob.get("/jobs/").status_code == 200
        call_command("axes_reset_username", "alice", stdout=StringIO())
        with httpx.Client(base_url=web.url) as alice:
            assert live_attempt(alice, "alice", PASSWORDS["alice"]).status_code == 302
            assert alice.get("/jobs/").status_code == 200
