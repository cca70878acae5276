"""The JSON API: every endpoint, its status codes and errors, token and session auth."""

from __future__ import annotations

import hashlib
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from copilot.jobs import services, transitions
from copilot.jobs.models import ApiToken, GenerationJob
from copilot.jobs.presenters import job_as_dict

Status = GenerationJob.Status
pytestmark = pytest.mark.django_db

GOAL = "Every morning, fetch the news and email me a summary"
AGENT = {"name": "A", "nodes": [], "links": []}
JSON = "application/json"  # the test client's default (multipart) body would be a 415


def token_for(user, name: str = "") -> str:
    out = StringIO()
    call_command("create_api_token", "--user", user.username, "--name", name, stdout=out)
    return out.getvalue().strip()


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def post_json(client: Client, url: str, body: object = None, **extra):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **extra)


@pytest.fixture
def api(user) -> Client:
    """A client that authenticates as ``user`` with a bearer token (and enforces CSRF)."""
    return Client(enforce_csrf_checks=True, **bearer(token_for(user)))


def submit(user, description: str = GOAL) -> GenerationJob:
    return services.job_submit(user=user, kind="decompose", payload={"description": description})


def fail(job: GenerationJob) -> GenerationJob:
    job = transitions.job_mark_submitting(job=job).job
    return transitions.job_fail(job=job, error_type="timeout", error_message="slow").job


# --- auth -----------------------------------------------------------------------------------


def test_create_api_token_prints_only_the_key_and_stores_its_hash(user):
    out = StringIO()
    call_command("create_api_token", "--user", "alice", "--name", "ci", stdout=out)
    key = out.getvalue()
    assert key.endswith("\n") and "\n" not in key.rstrip("\n") and len(key.strip()) >= 40
    token = ApiToken.objects.get()
    assert (token.user, token.name) == (user, "ci")
    assert token.key_hash == hashlib.sha256(key.strip().encode()).hexdigest()
    assert key.strip() not in token.key_hash


def test_create_api_token_needs_an_existing_user(db):
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("create_api_token", "--user", "nobody", stdout=StringIO())
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/jobs/"),
        ("post", "/api/jobs/"),
        ("get", "/api/jobs/00000000-0000-0000-0000-000000000000/"),
        ("post", "/api/jobs/00000000-0000-0000-0000-000000000000/cancel/"),
        ("post", "/api/jobs/00000000-0000-0000-0000-000000000000/retry/"),
    ],
)
def test_every_endpoint_needs_authentication(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response["WWW-Authenticate"] == "Bearer"


def test_an_unknown_token_is_refused(client, user):
    token_for(user)
    for header in ["Bearer not-a-real-token", "Bearer ", "bearer x"]:
        response = client.get("/api/jobs/", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
        assert response.json() == {"detail": "Invalid token."}


def test_a_token_of_an_inactive_user_is_refused(client, user):
    key = token_for(user)
    user.is_active = False
    user.save()
    assert client.get("/api/jobs/", **bearer(key)).status_code == 401


def test_a_token_authenticates_without_csrf_and_notes_its_use(user):
    key = token_for(user)
    assert ApiToken.objects.get().last_used_at is None
    client = Client(enforce_csrf_checks=True)
    response = post_json(
        client, "/api/jobs/", {"kind": "decompose", "description": GOAL}, **bearer(key)
    )
    assert response.status_code == 201
    assert GenerationJob.objects.get().owner == user
    assert ApiToken.objects.get().last_used_at is not None


def test_a_session_needs_the_csrf_token_for_unsafe_methods(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/jobs/").status_code == 200  # safe methods need none
    body = {"kind": "decompose", "description": GOAL}
    refused = post_json(client, "/api/jobs/", body)
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("CSRF failed:")
    assert not GenerationJob.objects.exists()
    client.get("/jobs/new/")  # any page with a form sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = post_json(client, "/api/jobs/", body, HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201
    assert GenerationJob.objects.get().owner == user


def test_a_method_an_endpoint_does_not_take_is_405(api, user):
    job = submit(user)
    response = api.delete("/api/jobs/")
    assert response.status_code == 405 and response["Allow"] == "GET, POST"
    assert api.get(f"/api/jobs/{job.id}/cancel/").status_code == 405
    assert api.put(f"/api/jobs/{job.id}/").status_code == 405


# --- submit ---------------------------------------------------------------------------------


def test_submit_answers_201_with_the_job(api, user):
    response = post_json(api, "/api/jobs/", {"kind": "decompose", "description": GOAL})
    assert response.status_code == 201
    job = GenerationJob.objects.get()
    assert response.json() == job_as_dict(job)
    assert response.json()["status"] == "queued"
    assert response["Location"] == f"/api/jobs/{job.id}/"
    assert job.request == {"description": GOAL}


@pytest.mark.parametrize(
    ("body", "request_"),
    [
        (
            {"kind": "update", "update_request": "Add Slack", "current_agent_json": AGENT},
            {"update_request": "Add Slack", "current_agent_json": AGENT},
        ),
        (
            {"kind": "customize", "modification_request": "Mine", "template_agent_json": AGENT},
            {"modification_request": "Mine", "template_agent_json": AGENT},
        ),
        (
            {"kind": "generate", "instructions": "1. search"},
            {"instructions": {"goal": "1. search"}},
        ),
    ],
)
def test_submit_takes_each_kinds_protocol_fields(api, body, request_):
    response = post_json(api, "/api/jobs/", body)
    assert response.status_code == 201
    assert GenerationJob.objects.get().request == request_


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ("{not json", {"body"}),
        ("", {"body"}),
        ([1, 2], {"body"}),
        ({"description": GOAL}, {"kind"}),
        ({"kind": "dance", "description": GOAL}, {"kind"}),
        ({"kind": "decompose"}, {"description"}),
        ({"kind": "decompose", "description": "x" * 10_001}, {"description"}),
        ({"kind": "decompose", "description": 42}, {"description"}),
        (
            {"kind": "update", "update_request": "x", "current_agent_json": [1]},
            {"current_agent_json"},
        ),
        ({"kind": "customize"}, {"modification_request", "template_agent_json"}),
    ],
)
def test_bad_bodies_are_400_with_field_errors(api, body, errors):
    response = post_json(api, "/api/jobs/", body)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == errors
    assert all(isinstance(m, str) and m for m in response.json()["errors"].values())
    assert not GenerationJob.objects.exists()


def test_the_active_jobs_limit_is_429(api, user, settings):
    settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER = 1
    submit(user)
    response = post_json(api, "/api/jobs/", {"kind": "decompose", "description": GOAL})
    assert response.status_code == 429
    assert "the limit is 1" in response.json()["detail"]
    assert GenerationJob.objects.count() == 1


# --- read -----------------------------------------------------------------------------------


def test_the_list_has_own_jobs_and_staff_see_all(api, user, other_user, staff_user):
    mine, theirs = submit(user), submit(other_user)
    body = api.get("/api/jobs/").json()
    assert body == {"results": [job_as_dict(mine)], "next": None}
    staff = Client(**bearer(token_for(staff_user)))
    ids = [job["id"] for job in staff.get("/api/jobs/").json()["results"]]
    assert ids == [str(theirs.id), str(mine.id)]  # newest first


def test_the_list_filters_and_refuses_bad_filters(api, user):
    queued, failed = submit(user), fail(submit(user))
    assert [j["id"] for j in api.get("/api/jobs/?status=failed").json()["results"]] == [
        str(failed.id)
    ]
    assert [j["id"] for j in api.get("/api/jobs/?status=queued").json()["results"]] == [
        str(queued.id)
    ]
    assert api.get("/api/jobs/?kind=generate").json()["results"] == []
    response = api.get("/api/jobs/?status=sleeping&page=0")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"status", "page"}


def test_the_list_pages_by_50_with_a_next_link(api, user):
    GenerationJob.objects.bulk_create(
        GenerationJob(owner=user, kind="decompose", request={"description": f"goal {i}"})
        for i in range(51)
    )
    first = api.get("/api/jobs/?kind=decompose").json()
    assert len(first["results"]) == 50
    assert first["next"].startswith("http://testserver/api/jobs/?kind=decompose&cursor=")
    second = api.get(first["next"]).json()
    assert len(second["results"]) == 1 and second["next"] is None
    seen = {j["id"] for j in first["results"]} | {j["id"] for j in second["results"]}
    assert len(seen) == 51


def test_one_job_for_its_owner_and_staff_and_404_for_others(api, user, other_user, staff_user):
    job = submit(user)
    assert api.get(f"/api/jobs/{job.id}/").json() == job_as_dict(job)
    staff = Client(**bearer(token_for(staff_user)))
    assert staff.get(f"/api/jobs/{job.id}/").status_code == 200
    other = Client(**bearer(token_for(other_user)))
    for method, suffix in [("get", ""), ("post", "cancel/"), ("post", "retry/")]:
        response = other.generic(method.upper(), f"/api/jobs/{job.id}/{suffix}")
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}
    for bad in ["not-a-uuid", "00000000-0000-0000-0000-000000000000"]:
        response = api.get(f"/api/jobs/{bad}/")
        assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
    job.refresh_from_db()
    assert job.status == Status.QUEUED


# --- cancel and retry -----------------------------------------------------------------------


def test_cancel_then_retry(api, user):
    job = submit(user)
    response = api.post(f"/api/jobs/{job.id}/cancel/", content_type=JSON)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["error_type"] == "cancelled"
    again = api.post(f"/api/jobs/{job.id}/cancel/", content_type=JSON)
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    response = api.post(f"/api/jobs/{job.id}/retry/", content_type=JSON)
    assert response.status_code == 200
    job.refresh_from_db()
    assert response.json() == job_as_dict(job)
    assert (job.status, job.attempt) == (Status.QUEUED, 2)


def test_cancel_of_a_running_job_is_requested(api, user):
    job = submit(user)
    transitions.job_mark_submitting(job=job)
    response = api.post(f"/api/jobs/{job.id}/cancel/", content_type=JSON)
    assert response.status_code == 200 and response.json()["status"] == "submitting"
    job.refresh_from_db()
    assert job.cancel_requested_at is not None


def test_retry_of_an_active_job_is_409(api, user):
    job = submit(user)
    response = api.post(f"/api/jobs/{job.id}/retry/", content_type=JSON)
    assert response.status_code == 409
    assert response.json()["detail"].startswith("Not allowed:")
    job.refresh_from_db()
    assert job.attempt == 1


def test_retry_of_a_failed_job_by_staff(user, staff_user):
    job = fail(submit(user))
    staff = Client(**bearer(token_for(staff_user)))
    response = staff.post(f"/api/jobs/{job.id}/retry/", content_type=JSON)
    assert response.status_code == 200 and response.json()["attempt"] == 2
    assert job.events.filter(type="retry").get().data["by"] == "admin"


# --- the rest of /api/ ----------------------------------------------------------------------


def test_a_bad_token_is_401_even_with_a_session(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.get("/api/jobs/", HTTP_AUTHORIZATION="Bearer not-a-real-token")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_unknown_api_paths_are_json_404s(api, client):
    for method, path in [
        ("GET", "/api/"),
        ("GET", "/api/nope"),
        ("GET", "/api/jobs"),  # no trailing slash
        ("POST", "/api/jobs/x/y/"),
    ]:
        for caller in (api, client):  # with a token, and with nothing (no CSRF token either)
            response = caller.generic(method, path)
            assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
    response = api.generic("POST", "/api/jobs/not-a-uuid/cancel/")  # a route, a bad id
    assert (response.status_code, response.json()) == (404, {"detail": "Not found."})


def test_a_method_not_allowed_is_json(api, user):
    job = submit(user)
    for method, path, allowed in [
        ("DELETE", "/api/jobs/", "GET, POST"),
        ("GET", f"/api/jobs/{job.id}/retry/", "POST"),
        ("PATCH", f"/api/jobs/{job.id}/", "GET"),
    ]:
        response = api.generic(method, path)
        assert response.status_code == 405 and response["Allow"] == allowed
        assert response.json() == {"detail": f"Method {method} not allowed."}


def test_errors_never_repeat_the_input(api):
    secret = "s3cr3t-" * 2_000
    response = post_json(api, "/api/jobs/", {"kind": "decompose", "description": secret})
    assert response.status_code == 400
    assert response.json() == {
        "errors": {"description": "Must be at most 10,000 characters (it has 14,000)."}
    }
    for query in [f"status={secret}", f"kind={secret}", f"page={secret}"]:
        response = api.get(f"/api/jobs/?{query}")
        assert response.status_code == 400 and "s3cr3t" not in response.content.decode()
    response = post_json(api, "/api/jobs/", '{"kind": "decompose", "description": "s3cr3t')
    assert response.status_code == 400 and "s3cr3t" not in response.content.decode()


def test_the_docs_page_is_swagger_ui_from_the_portal_with_data_images_allowed(client):
    response = client.get("/api/docs")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert '<script src="/static/ninja/swagger-ui-bundle.js">' in page
    assert "http://" not in page and "https://" not in page  # no CDN
    assert "img-src 'self' data:" in response["Content-Security-Policy"]
    for other in ("/accounts/login/", "/api/openapi.json"):
        assert "data:" not in client.get(other)["Content-Security-Policy"]
