"""A retry counts against the active-jobs limit like a submit, at every door; API tokens expire.

The retry sequence is the README's: with the limit at 3, submit 3, cancel 3, submit 1, then
retry the 3 cancelled ones: two pass, the third is refused (429 and Retry-After on the API).
"""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import formats, timezone

from copilot.jobs import services
from copilot.jobs.exceptions import IllegalTransition, JobLimitReached, TokenExpired
from copilot.jobs.models import ApiToken, GenerationJob
from copilot.jobs.tokens import api_token_create, user_for_key
from copilot.ops.management.commands.create_api_token import Command as CreateApiToken
from tests.support.portal import manage_py_refusal

pytestmark = pytest.mark.django_db

GOAL = "Every morning, fetch the news and email me a summary"
JSON = "application/json"
LIMIT = 3


@pytest.fixture
def limit(settings) -> int:
    settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER = LIMIT
    return LIMIT


def submit(user) -> GenerationJob:
    return services.job_submit(user=user, kind="decompose", payload={"description": GOAL})


@pytest.fixture
def cancelled_at_the_limit(user, limit) -> list[GenerationJob]:
    """Submit 3, cancel 3, submit 1: the 3 cancelled jobs, with room for 2 more active ones."""
    jobs = [submit(user) for _ in range(limit)]
    for job in jobs:
        services.job_cancel(job_id=job.id, by=user)
    submit(user)
    return jobs


def active_count(user) -> int:
    return GenerationJob.objects.active().filter(owner=user).count()


def bearer(user) -> Client:
    _, key = api_token_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


# --- the retry cap ---------------------------------------------------------------------------


def test_a_retry_at_the_limit_is_refused_by_the_service(user, cancelled_at_the_limit):
    first, second, third = cancelled_at_the_limit
    services.job_retry(job_id=first.id, by=user)
    services.job_retry(job_id=second.id, by=user)
    with pytest.raises(JobLimitReached, match="alice already has 3 active job"):
        services.job_retry(job_id=third.id, by=user)
    third.refresh_from_db()
    assert (third.status, third.attempt) == ("cancelled", 1)
    assert active_count(user) == LIMIT


def test_a_job_that_cannot_be_retried_says_so_before_the_limit(user, limit):
    jobs = [submit(user) for _ in range(limit)]
    with pytest.raises(IllegalTransition):
        services.job_retry(job_id=jobs[0].id, by=user)


def test_the_api_answers_the_third_retry_429_with_retry_after(user, cancelled_at_the_limit):
    api = bearer(user)
    first, second, third = cancelled_at_the_limit
    for job in (first, second):
        response = api.post(f"/api/jobs/{job.id}/retry/", content_type=JSON)
        assert response.status_code == 200
    response = api.post(f"/api/jobs/{third.id}/retry/", content_type=JSON)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "the limit is 3" in response.json()["detail"]
    assert active_count(user) == LIMIT


def test_the_api_answers_a_submit_at_the_limit_the_same_way(user, limit):
    api = bearer(user)
    for _ in range(limit):
        submit(user)
    body = {"kind": "decompose", "description": GOAL}
    response = api.post("/api/jobs/", body, content_type=JSON)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "the limit is 3" in response.json()["detail"]


def test_the_retry_button_at_the_limit_says_why(client, user, cancelled_at_the_limit):
    client.force_login(user)
    first, second, third = cancelled_at_the_limit
    for job in (first, second):
        client.post(f"/jobs/{job.id}/retry/")
    response = client.post(f"/jobs/{third.id}/retry/", follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    assert "Not retried: alice already has 3 active job(s); the limit is 3." in text
    third.refresh_from_db()
    assert third.status == "cancelled"


def run_retry_jobs(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("retry_jobs", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_retry_jobs_lists_each_refused_job_and_changes_nothing(user, cancelled_at_the_limit):
    ids = [str(job.id) for job in cancelled_at_the_limit]
    out, _ = run_retry_jobs(*ids, "--dry-run")
    assert out.splitlines() == [
        f"would retry {ids[0]} (cancelled, attempt 1)",
        f"would retry {ids[1]} (cancelled, attempt 1)",
        f"would refuse {ids[2]}: alice would have 4 active jobs; the limit is 3",
    ]
    before = sorted(GenerationJob.objects.values_list("pk", "status", "attempt"))
    err = StringIO()
    with pytest.raises(CommandError) as info:
        call_command("retry_jobs", *ids, stdout=StringIO(), stderr=err)
    assert str(info.value) == (
        "1 of 3 job(s) would pass their owner's active-jobs limit "
        "(COPILOT_MAX_ACTIVE_JOBS_PER_USER); nothing changed"
    )
    refused = [line for line in err.getvalue().splitlines() if line.startswith("refused")]
    assert refused == [
        f"refused {ids[2]}: alice already has 3 active job(s); the limit is 3. "
        "Wait for one to finish or cancel one."
    ]
    assert sorted(GenerationJob.objects.values_list("pk", "status", "attempt")) == before
    out, _ = run_retry_jobs(*ids[:2])  # within the limit: done
    assert out.splitlines()[-1] == "2 job(s) queued again"
    assert active_count(user) == LIMIT


def test_the_admin_retry_action_at_the_limit_says_which_job(client, staff_user, user,
                                                            cancelled_at_the_limit):  # fmt: skip
    client.force_login(staff_user)
    response = client.post(
        reverse("admin:copilot_generationjob_changelist"),
        {"action": "retry_jobs", "_selected_action": [str(j.id) for j in cancelled_at_the_limit]},
        follow=True,
    )
    text = response.content.decode()
    assert "Retried 2 job(s)." in text
    refused = re.findall(r"Not retried: job ([0-9a-f-]{36}): alice already has 3 active", text)
    assert len(refused) == 1
    assert active_count(user) == LIMIT


# --- token expiry ------------------------------------------------------------------------------


def create_token(*args: str) -> str:
    out = StringIO()
    call_command("create_api_token", "--user", "alice", *args, stdout=out)
    return out.getvalue().strip()


def test_a_token_has_no_expiry_unless_asked(user):
    create_token()
    assert ApiToken.objects.get().expires_at is None
    help_text = CreateApiToken().create_parser("manage.py", "create_api_token").format_help()
    assert "default: no expiry" in help_text


def test_expires_in_sets_the_expiry(user):
    before = timezone.now()
    key = create_token("--expires-in", "90d")
    token = ApiToken.objects.get()
    assert before + timedelta(days=90) <= token.expires_at <= timezone.now() + timedelta(days=90)
    assert user_for_key(key=key) == user


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "'soon' is not a duration like 90s"),
        ("90", "'90' is not a duration"),
        ("-1d", "'-1d' is not a duration"),
        ("1.5d", "'1.5d' is not a duration"),
        ("0d", "'0d' is no time at all"),
        ("36501d", "'36501d' is too long; the most is 36500d"),
        ("99999999999999999999w", "is too long"),
    ],
)
def test_a_bad_expires_in_is_one_line_and_makes_no_token(user, value, message):
    with pytest.raises(CommandError) as info:
        create_token(f"--expires-in={value}")
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not ApiToken.objects.exists()


@pytest.mark.slow
def test_a_bad_expires_in_from_the_shell_is_one_line_and_exit_status_1():
    result = manage_py_refusal("create_api_token", "--user", "x", "--expires-in", "soon")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "CommandError: argument --expires-in: 'soon' is not a duration like 90s, 15m, 24h or 30d"
    ]


def test_an_expired_token_is_401_saying_so_and_a_valid_one_200(client, user):
    key = create_token("--expires-in", "1h")
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1), last_used_at=None)
    response = client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"].lower()
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert ApiToken.objects.get().last_used_at is None  # an expired key is not a use
    with pytest.raises(TokenExpired):
        user_for_key(key=key)
    unknown = client.get("/api/jobs/", HTTP_AUTHORIZATION="Bearer not-a-key")
    assert unknown.json() == {"detail": "Invalid token."}


# --- revoking in the admin ---------------------------------------------------------------------


def test_plain_staff_see_tokens_with_their_expiry_and_revoke_them(client, staff_user, user):
    assert not staff_user.user_permissions.exists() and not staff_user.is_superuser
    forever, forever_key = api_token_create(user=user, name="forever")
    dated, dated_key = api_token_create(user=user, name="dated", expires_in=timedelta(days=90))
    client.force_login(staff_user)
    changelist = reverse("admin:copilot_apitoken_changelist")
    listing = client.get(changelist)
    assert listing.status_code == 200
    text = listing.content.decode()
    assert "forever" in text and "dated" in text and "never" in text
    assert formats.localize(timezone.template_localtime(dated.expires_at)) in text
    assert 'alt="True"' not in text  # the expired column: none has expired
    ApiToken.objects.filter(pk=dated.pk).update(expires_at=timezone.now() - timedelta(days=1))
    assert 'alt="True"' in client.get(changelist).content.decode()
    assert forever.key_hash not in text and forever_key not in text
    assert "copilot/apitoken" in client.get(reverse("admin:index")).content.decode()
    # One by its delete page, one with the list's delete action.
    delete = reverse("admin:copilot_apitoken_delete", args=[forever.pk])
    assert client.get(delete).status_code == 200
    assert client.post(delete, {"post": "yes"}).status_code == 302
    client.post(
        changelist, {"action": "delete_selected", "_selected_action": [dated.pk], "post": "yes"}
    )
    assert not ApiToken.objects.exists()
    assert user_for_key(key=forever_key) is None and user_for_key(key=dated_key) is None


def test_non_staff_cannot_see_or_revoke_tokens(client, user):
    token, _ = api_token_create(user=user)
    client.force_login(user)
    for url in (
        reverse("admin:copilot_apitoken_changelist"),
        reverse("admin:copilot_apitoken_delete", args=[token.pk]),
    ):
        response = client.post(url, {"post": "yes"})
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert ApiToken.objects.exists()
