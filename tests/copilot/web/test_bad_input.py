"""Bad input never gets a 5xx: page numbers, filters, deep JSON, bodies of the wrong type or size.

The API answers 400/413/415 as JSON, the pages show the nearest valid page or a form error,
``submit_job`` exits with one line; and a job nested deeper than MAX_JSON_DEPTH is never stored,
so a runner never sees one. The last test sends it all to a real Daphne and reads its log.
"""

from __future__ import annotations

import base64
import json
from io import StringIO

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from copilot.jobs import services
from copilot.jobs.exceptions import InvalidJobRequest
from copilot.jobs.json_limits import (
    JSON_TOO_DEEP,
    MAX_JSON_DEPTH,
    MAX_PARSE_DEPTH,
    MAX_VALUE_DEPTH,
    VALUE_TOO_DEEP,
    json_too_deep,
)
from copilot.jobs.models import GenerationJob
from copilot.jobs.tokens import api_token_create
from tests.copilot.web.test_pages import field_errors
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env

pytestmark = pytest.mark.django_db

GOAL = "Every morning, fetch the news and email me a summary"
JSON = "application/json"
BAD_CURSORS = [
    "x",
    "\x00",
    "%",
    "b3wyMDI2",  # base64 of a cut-off cursor
    base64.urlsafe_b64encode(b"o|2026-01-01T00:00:00|" + b"0" * 32).decode(),  # naive time
    base64.urlsafe_b64encode(b"x|2026-01-01T00:00:00+00:00|" + b"0" * 32).decode(),
    base64.urlsafe_b64encode(b"o|2026-01-01T00:00:00+00:00|" + b"g" * 32).decode(),
    "A" * 201,
]
BAD_PAGES = ["99999999999999999999", "9223372036854775807", "²", "٣", "0", "-1", "1e3", " 1", ""]
JOB_ID = "00000000-0000-0000-0000-000000000000"


def nested(depth: int) -> str:
    """JSON text of arrays nested ``depth`` deep (1: ``[]``), made without recursion."""
    return "[" * depth + "]" * depth


def agent_text(depth: int) -> str:
    """An agent (an object, 1 level) whose extra key nests it ``depth`` levels deep in all."""
    return '{"nodes": [], "links": [], "extra": ' + nested(depth - 1) + "}"


def update_body(depth: int) -> str:
    """An update job's API body (an object, 1 level) nested ``depth`` levels deep in all."""
    return '{"kind": "update", "update_request": "add Slack", "current_agent_json": ' + (
        agent_text(depth - 1) + "}"
    )


def csrf_session(user) -> tuple[Client, str]:
    """A client logged in as ``user`` that enforces CSRF, and its CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/jobs/new/")  # sets the csrftoken cookie
    return client, client.cookies["csrftoken"].value


@pytest.fixture
def api(user) -> Client:
    _, key = api_token_create(user=user)
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {key}")


def make_jobs(user, count: int) -> None:
    GenerationJob.objects.bulk_create(
        GenerationJob(owner=user, kind="decompose", request={"description": f"goal {i}"})
        for i in range(count)
    )


# --- the depth scan itself --------------------------------------------------------------------


def test_the_depth_scan_counts_brackets_outside_strings_only():
    assert not json_too_deep(nested(MAX_PARSE_DEPTH))
    assert json_too_deep(nested(MAX_PARSE_DEPTH + 1))
    assert json_too_deep(nested(10_000).encode())
    assert not json_too_deep('["[[[[\\"[[[", {"a": "{{{{"}]', limit=2)
    assert json_too_deep('[[{"a": "]]]]"}]]', limit=2)
    assert not json_too_deep('["' + "[" * 100, limit=1)  # an unclosed string: left to json
    assert json_too_deep(nested(MAX_PARSE_DEPTH + 1).encode("utf-16"))


# --- page numbers and filters -----------------------------------------------------------------


@pytest.mark.parametrize("page", BAD_PAGES)
def test_a_bad_page_number_is_a_400_naming_page(api, page):
    response = api.get("/api/jobs/", {"page": page})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"page"}
    assert "1 to 1,000,000" in response.json()["errors"]["page"]


def test_the_last_page_number_taken_is_answered_empty(api, user):
    make_jobs(user, 1)
    assert api.get("/api/jobs/", {"page": "1000000"}).json() == {"results": [], "next": None}
    assert api.get("/api/jobs/", {"page": "1000001"}).status_code == 400


@pytest.mark.parametrize("name", ["status", "kind"])
@pytest.mark.parametrize("value", ["\x00", "²", "x" * 10_000, "queued\x00", ""])
def test_a_bad_filter_is_a_400_naming_it(api, name, value):
    response = api.get("/api/jobs/", {name: value})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {name}


@pytest.mark.parametrize("page", [*BAD_PAGES, "2"])
def test_the_job_list_ignores_the_old_page_numbers(client, user, page):
    """Bookmarks of the numbered pages still open (on the newest jobs)."""
    make_jobs(user, 51)
    client.force_login(user)
    response = client.get("/jobs/", {"page": page})
    assert response.status_code == 200
    assert response.content.decode().count("data-job-id=") == 50
    assert "page=" not in response.context["older_query"]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_bad_cursor_on_the_job_list_is_a_400_showing_the_newest(client, user, cursor):
    make_jobs(user, 51)
    client.force_login(user)
    response = client.get("/jobs/", {"cursor": cursor})
    assert response.status_code == 400
    page = response.content.decode()
    assert "That page link is not valid" in page and page.count("data-job-id=") == 50


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_bad_cursor_is_a_400_naming_cursor(api, cursor):
    response = api.get("/api/jobs/", {"cursor": cursor})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"cursor"}
    assert "next" in response.json()["errors"]["cursor"]


@pytest.mark.parametrize(
    "query",
    [
        {"status": "\x00"},
        {"kind": "sleeping"},
        {"owner": "\x00"},
        {"owner": "x" * 10_000},
        {"owner": "²", "page": "²", "status": "queued"},
    ],
)
def test_the_job_list_page_takes_any_filter(client, staff_user, query):
    make_jobs(staff_user, 1)
    client.force_login(staff_user)
    assert client.get("/jobs/", query).status_code == 200


# --- JSON depth: the API --------------------------------------------------------------------


def test_an_api_body_nested_to_the_limit_is_a_job(api):
    response = api.post("/api/jobs/", update_body(MAX_JSON_DEPTH), content_type=JSON)
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (update_body(MAX_JSON_DEPTH + 1), "current_agent_json"),  # parsed; the schema refuses
        (update_body(MAX_PARSE_DEPTH + 1), "body"),  # not parsed at all
        (nested(10_000), "body"),
    ],
    ids=["schema", "parse-limit", "10000"],
)
def test_an_api_body_nested_deeper_is_a_400_naming_the_limit(api, body, field):
    response = api.post("/api/jobs/", body, content_type=JSON)
    assert response.status_code == 400
    message = JSON_TOO_DEEP if field == "body" else VALUE_TOO_DEEP
    assert response.json()["errors"] == {field: message}
    assert not GenerationJob.objects.exists()


@pytest.mark.alldb
@pytest.mark.parametrize(
    "value",
    ['"a\\u0000b"', '"\\ud800"', '{"\\u0000": 1}', "NaN", "[Infinity]", "-Infinity"],
)
def test_values_the_database_cannot_store_are_a_400(api, value):
    body = '{"kind": "update", "update_request": "x", "current_agent_json": {"x": ' + value + "}}"
    response = api.post("/api/jobs/", body, content_type=JSON)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"current_agent_json"}
    text = '{"kind": "decompose", "description": ' + value + "}"
    assert api.post("/api/jobs/", text, content_type=JSON).status_code == 400
    assert not GenerationJob.objects.exists()


def test_the_service_refuses_data_nested_deeper_than_the_limit(user):
    """Whatever the caller (a follow-up, a generate from a result), nothing deeper is stored."""
    agent = {"nodes": [], "links": [], "extra": json.loads(nested(MAX_VALUE_DEPTH - 1))}
    services.job_submit(
        user=user, kind="update", payload={"update_request": "x", "current_agent_json": agent}
    )
    agent["extra"] = json.loads(nested(MAX_VALUE_DEPTH))
    with pytest.raises(InvalidJobRequest) as info:
        services.job_submit(
            user=user, kind="update", payload={"update_request": "x", "current_agent_json": agent}
        )
    assert info.value.errors == {"current_agent_json": VALUE_TOO_DEEP}
    deep_instructions = {"goal": "x", "steps": json.loads(nested(MAX_VALUE_DEPTH))}
    with pytest.raises(InvalidJobRequest):
        services.job_submit(user=user, kind="generate", payload={"instructions": deep_instructions})
    assert GenerationJob.objects.count() == 1


# --- JSON depth: the new-job form -------------------------------------------------------------


def post_agent(client: Client, *, text: str, upload: bool):
    data: dict[str, object] = {"kind": "update", "text": "Add a Slack step"}
    if upload:
        data["agent_file"] = SimpleUploadedFile("agent.json", text.encode())
    else:
        data["agent_json"] = text
    return client.post("/jobs/new/", data)


@pytest.mark.parametrize("upload", [False, True], ids=["pasted", "uploaded"])
def test_an_agent_nested_to_the_limit_is_a_job(client, user, upload):
    client.force_login(user)
    response = post_agent(client, text=agent_text(MAX_VALUE_DEPTH), upload=upload)
    assert response.status_code == 302
    assert GenerationJob.objects.count() == 1


@pytest.mark.parametrize("upload", [False, True], ids=["pasted", "uploaded"])
@pytest.mark.parametrize("depth", [MAX_VALUE_DEPTH + 1, 10_000])
def test_an_agent_nested_deeper_is_an_error_by_its_field(client, user, upload, depth):
    client.force_login(user)
    response = post_agent(client, text=agent_text(depth), upload=upload)
    assert response.status_code == 200
    field = "agent_file" if upload else "agent_json"
    message = VALUE_TOO_DEEP if depth <= MAX_PARSE_DEPTH else JSON_TOO_DEEP
    assert message in field_errors(response, field)
    assert not GenerationJob.objects.exists()


# --- JSON depth: submit_job ------------------------------------------------------------------


def submit_agent_file(tmp_path, text: str) -> str:
    path = tmp_path / "agent.json"
    path.write_text(text)
    out, err = StringIO(), StringIO()
    call_command(
        "submit_job", "--kind", "update", "--description", "add a Slack step",
        "--agent-json", str(path), "--user", "alice", stdout=out, stderr=err,
    )  # fmt: skip
    return out.getvalue()


def test_submit_job_takes_an_agent_nested_to_the_limit(user, tmp_path):
    assert "queued" in submit_agent_file(tmp_path, agent_text(MAX_VALUE_DEPTH))
    assert GenerationJob.objects.count() == 1


@pytest.mark.parametrize("depth", [MAX_VALUE_DEPTH + 1, 10_000])
def test_submit_job_refuses_an_agent_nested_deeper_in_one_line(user, tmp_path, depth):
    with pytest.raises(CommandError) as info:
        submit_agent_file(tmp_path, agent_text(depth))
    message = str(info.value)
    assert "\n" not in message
    if depth <= MAX_PARSE_DEPTH:  # read, then refused by the schema, as the API and form do
        assert message == f"invalid job: current_agent_json: {VALUE_TOO_DEEP}"
    else:
        assert "too deeply nested" in message and JSON_TOO_DEEP in message
    assert not GenerationJob.objects.exists()


# --- bodies that are not JSON, or too large ----------------------------------------------------

POST_PATHS = ["/api/jobs/", f"/api/jobs/{JOB_ID}/cancel/", f"/api/jobs/{JOB_ID}/retry/"]
NOT_JSON = [
    ("multipart", {"kind": "decompose", "description": GOAL}, None),
    ("form", "kind=decompose&description=x", "application/x-www-form-urlencoded"),
    ("text", '{"kind": "decompose"}', "text/plain"),
]


def post_not_json(client: Client, path: str, data, content_type: str | None, **extra):
    if content_type is None:  # the test client's multipart
        return client.post(path, data, **extra)
    return client.post(path, data, content_type=content_type, **extra)


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize(("name", "data", "content_type"), NOT_JSON, ids=[n[0] for n in NOT_JSON])
def test_a_body_that_is_not_json_is_a_415_with_a_session(user, path, name, data, content_type):
    client, token = csrf_session(user)
    response = post_not_json(client, path, data, content_type, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 415
    assert JSON in response.json()["detail"]
    assert response["Accept-Post"] == JSON
    assert not GenerationJob.objects.exists()


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize(("name", "data", "content_type"), NOT_JSON, ids=[n[0] for n in NOT_JSON])
def test_a_body_that_is_not_json_is_a_415_with_a_token(api, path, name, data, content_type):
    response = post_not_json(api, path, data, content_type)
    assert response.status_code == 415


def test_cancel_and_retry_take_no_body_or_a_json_one(api, user):
    job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
    no_body = api.generic("POST", f"/api/jobs/{job.id}/cancel/")  # as curl -X POST sends it
    assert no_body.status_code == 200
    assert api.post(f"/api/jobs/{job.id}/retry/", "{}", content_type=JSON).status_code == 200


@pytest.mark.parametrize("path", POST_PATHS)
def test_a_body_larger_than_the_upload_limit_is_a_413(api, user, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = json.dumps({"kind": "decompose", "description": "x" * 2_000})
    response = api.post(path, body, content_type=JSON)
    assert response.status_code == 413
    assert "the limit is 1,000 bytes" in response.json()["detail"]
    client, token = csrf_session(user)
    response = client.post(path, body, content_type=JSON, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 413
    assert not GenerationJob.objects.exists()


# --- all of it through a real server ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.alldb
@pytest.mark.django_db(transaction=True)
def test_a_live_server_answers_every_bad_input_with_a_4xx_and_logs_no_traceback(user, settings):
    settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER = 3
    _, key = api_token_create(user=user, name="live")
    expired, expired_key = api_token_create(user=user, name="old")
    expired.expires_at = expired.created_at
    expired.save()
    cookie_client = Client()
    cookie_client.force_login(user)
    session = cookie_client.cookies["sessionid"].value
    port = free_port()
    env = portal_env(COPILOT_RUNNER_IN_PROCESS="false", COPILOT_MAX_ACTIVE_JOBS_PER_USER="3")
    daphne = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot.asgi:application"]
    with run_server(args=daphne, port=port, env=env, ready_path="/admin/login/") as web:
        bearer = httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {key}"})
        browser = httpx.Client(base_url=web.url, cookies={"sessionid": session})
        browser.get("/jobs/new/")
        csrf = {"X-CSRFToken": browser.cookies["csrftoken"]}
        seen: list[tuple[str, int]] = []

        def expect(status: int, response: httpx.Response, what: str) -> httpx.Response:
            seen.append((what, response.status_code))
            assert response.status_code == status, (what, response.text[:300])
            return response

        for page in BAD_PAGES:
            expect(400, bearer.get("/api/jobs/", params={"page": page}), f"api page {page!r}")
            expect(200, browser.get("/jobs/", params={"page": page}), f"page {page!r}")
        for depth in (MAX_JSON_DEPTH + 1, 10_000):
            body = update_body(depth) if depth < 100 else nested(depth)
            expect(400, bearer.post("/api/jobs/", content=body, headers={"Content-Type": JSON}),
                   f"api depth {depth}")  # fmt: skip
            form = {"kind": "update", "text": "x", "agent_json": agent_text(depth)}
            expect(200, browser.post("/jobs/new/", data=form, headers=csrf), f"paste {depth}")
            files = {"agent_file": ("a.json", agent_text(depth).encode(), JSON)}
            data = {"kind": "update", "text": "x"}
            expect(200, browser.post("/jobs/new/", data=data, files=files, headers=csrf),
                   f"upload {depth}")  # fmt: skip
        for path in POST_PATHS:
            multipart = browser.post(path, data={"kind": "decompose"}, files={"f": b"x"},
                                     headers=csrf)  # fmt: skip
            expect(415, multipart, f"multipart {path}")
            expect(415, browser.post(path, data={"kind": "decompose"}, headers=csrf),
                   f"form-encoded {path}")  # fmt: skip
            big = {"Content-Type": JSON, **csrf}
            expect(413, browser.post(path, content=b" " * 3_000_000, headers=big), f"big {path}")
        # Chunked: no Content-Length to go by; the body is read up to the limit, then refused.
        chunks = iter([b" " * 1_000_000] * 3)
        expect(413, bearer.post("/api/jobs/", content=chunks, headers={"Content-Type": JSON}),
               "chunked")  # fmt: skip
        expect(401, httpx.get(f"{web.url}/api/jobs/", headers={"Authorization":
               f"Bearer {expired_key}"}), "expired token")  # fmt: skip
        # The active-jobs limit: submit 3, cancel 3, submit 1, retry the 3: the third is 429.
        submit = {"kind": "decompose", "description": GOAL}
        ids = [expect(201, bearer.post("/api/jobs/", json=submit), "submit").json()["id"]
               for _ in range(3)]  # fmt: skip
        for job_id in ids:
            expect(200, bearer.post(f"/api/jobs/{job_id}/cancel/"), "cancel")
        expect(201, bearer.post("/api/jobs/", json=submit), "submit")
        expect(200, bearer.post(f"/api/jobs/{ids[0]}/retry/"), "retry 1")
        expect(200, bearer.post(f"/api/jobs/{ids[1]}/retry/"), "retry 2")
        limited = expect(429, bearer.post(f"/api/jobs/{ids[2]}/retry/"), "retry 3")
        assert limited.headers["Retry-After"].isdigit()
        output = web.output()
    assert not [(what, status) for what, status in seen if status >= 500]
    assert "Unsupported Media Type: /api/jobs/" in output  # the log is the server's, and read
    assert "Traceback" not in output, output[-3000:]
    assert "Internal Server Error" not in output
