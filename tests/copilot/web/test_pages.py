"""The portal's pages: who sees what, the forms and their errors, the buttons, the results.

Jobs are moved through their states with the real services (no runner runs here).
"""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from copilot.jobs import events, services, transitions
from copilot.jobs.job_requests import MAX_TEXT_CHARS
from copilot.jobs.models import GenerationJob
from copilot.web.display import ERROR_SENTENCES
from copilot.web.forms import MAX_AGENT_JSON_BYTES

Status = GenerationJob.Status
pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script>'
GOAL = "Every morning, fetch the news and email me a summary"
AGENT = {
    "id": "agent-1",
    "name": "News digest",
    "description": "Fetches and mails",
    "nodes": [
        {"id": "n1", "block_id": "no-such-block", "input_default": {}, "metadata": {}},
        {"id": "n2", "block_id": "other-block", "input_default": {}, "metadata": {}},
    ],
    "links": [
        {"id": "l1", "source_id": "n1", "sink_id": "n2", "source_name": "out", "sink_name": "in"}
    ],
}


def submit(user, text: str = GOAL, kind: str = "decompose", **extra) -> GenerationJob:
    field = {"decompose": "description", "generate": "instructions"}.get(kind, "update_request")
    return services.job_submit(user=user, kind=kind, payload={field: text, **extra})


def run(job: GenerationJob) -> GenerationJob:
    job = transitions.job_mark_submitting(job=job).job
    return transitions.job_mark_running(job=job, upstream_job_id="up-1").job


def complete(job: GenerationJob, result: dict) -> GenerationJob:
    return transitions.job_complete(job=run(job), result=result).job


def fail(job: GenerationJob, error_type: str = "service_unavailable") -> GenerationJob:
    job = transitions.job_mark_submitting(job=job).job
    return transitions.job_fail(
        job=job, error_type=error_type, error_message="upstream said no"
    ).job


def login(client: Client, user) -> Client:
    client.force_login(user)
    return client


def text_of(response) -> str:
    return response.content.decode()


def detail_url(job: GenerationJob) -> str:
    return reverse("job_detail", kwargs={"job_id": job.id})


# --- access ---------------------------------------------------------------------------------


def test_anonymous_requests_go_to_the_login_page(client, user):
    job = complete(submit(user), {"type": "agent", "agent_json": AGENT})
    for url in [
        "/",
        "/jobs/",
        "/jobs/new/",
        detail_url(job),
        f"/jobs/{job.id}/agent.json",
    ]:
        response = client.get(url, follow=True)
        assert response.redirect_chain[-1][0].startswith("/accounts/login/?next="), url
        assert 'id="login-form"' in text_of(response)
    for action in ["cancel", "retry", "answer", "generate"]:
        response = client.post(f"/jobs/{job.id}/{action}/")
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    job.refresh_from_db()
    assert (job.status, job.attempt) == (Status.COMPLETED, 1)


def test_log_in_and_out(client, user):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert 'id="login-form"' in text_of(page)
    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": "alice-pass-123", "next": "/jobs/new/"},
    )
    assert response.status_code == 302 and response["Location"] == "/jobs/new/"
    assert client.get("/jobs/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405  # logging out is POST only
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/jobs/").status_code == 302


def test_wrong_password_is_an_error_on_the_login_page(client, user):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "errornote" in text_of(response)


def test_home_is_the_job_list(client, user):
    response = login(client, user).get("/")
    assert response.status_code == 302 and response["Location"] == "/jobs/"


def test_job_pages_are_for_owner_and_staff_only(client, user, other_user, staff_user):
    job = complete(submit(user), {"type": "agent", "agent_json": AGENT})
    urls = [detail_url(job), f"/jobs/{job.id}/agent.json"]
    for url in urls:
        assert login(Client(), user).get(url).status_code == 200
        assert login(Client(), staff_user).get(url).status_code == 200
        assert login(Client(), other_user).get(url).status_code == 404
    other = login(Client(), other_user)
    for action in ["cancel", "retry", "answer", "generate"]:
        assert other.post(f"/jobs/{job.id}/{action}/").status_code == 404
    assert login(client, user).get("/jobs/not-a-uuid/").status_code == 404
    unknown = "/jobs/00000000-0000-0000-0000-000000000000/"
    assert client.get(unknown).status_code == 404


# --- the list -------------------------------------------------------------------------------


def test_the_list_shows_own_jobs_and_staff_see_all_with_owners(user, other_user, staff_user):
    mine = submit(user, "Alice's goal about the weather")
    theirs = fail(submit(other_user, "Bob's goal about stocks"))
    page = text_of(login(Client(), user).get("/jobs/"))
    assert str(mine.id) in page and "weather" in page
    assert str(theirs.id) not in page and "stocks" not in page
    assert ">Owner<" not in page
    assert "Queued" in page and "Decompose a goal" in page

    staff = login(Client(), staff_user)
    page = text_of(staff.get("/jobs/"))
    assert str(mine.id) in page and str(theirs.id) in page
    assert ">Owner<" in page and ">bob<" in page
    filtered = text_of(staff.get("/jobs/", {"status": "failed"}))
    assert str(theirs.id) in filtered and str(mine.id) not in filtered
    filtered = text_of(staff.get("/jobs/", {"owner": "alice", "kind": "decompose"}))
    assert str(mine.id) in filtered and str(theirs.id) not in filtered
    # A user's owner filter does not reach other people's jobs.
    assert str(theirs.id) not in text_of(login(Client(), user).get("/jobs/", {"owner": "bob"}))


def test_the_list_is_paginated_by_50(client, user):
    GenerationJob.objects.bulk_create(
        GenerationJob(owner=user, kind="decompose", request={"description": f"goal {i}"})
        for i in range(51)
    )
    login(client, user)
    first = text_of(client.get("/jobs/"))
    assert first.count("data-job-id=") == 50
    assert "Newer jobs" not in first and 'rel="next"' in first
    older = client.get("/jobs/").context["older_query"]
    second = text_of(client.get(f"/jobs/?{older}"))
    assert second.count("data-job-id=") == 1
    assert "Older jobs" not in second and 'rel="prev"' in second


def test_user_text_is_escaped_on_the_list(client, user):
    submit(user, f"{XSS} and more")
    page = text_of(login(client, user).get("/jobs/"))
    assert XSS not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


# --- the new job form -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["decompose", "generate", "update", "customize"])
def test_the_new_job_form_of_each_kind(client, user, kind):
    page = text_of(login(client, user).get("/jobs/new/", {"kind": kind}))
    assert f'name="kind" value="{kind}"' in page
    assert 'name="text"' in page
    assert ('name="agent_file"' in page) == (kind in ("update", "customize"))
    assert 'enctype="multipart/form-data"' in page and "csrfmiddlewaretoken" in page


def test_a_decompose_job_is_submitted_and_opens_its_page(client, user):
    response = login(client, user).post("/jobs/new/", {"kind": "decompose", "text": GOAL})
    job = GenerationJob.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == detail_url(job)
    assert (job.kind, job.request, job.status) == ("decompose", {"description": GOAL}, "queued")


def test_a_generate_job_wraps_its_instructions(client, user):
    login(client, user).post("/jobs/new/", {"kind": "generate", "text": "1. Search\n2. Email"})
    job = GenerationJob.objects.get(owner=user)
    assert job.request == {"instructions": {"goal": "1. Search\n2. Email"}}


def test_an_update_job_takes_pasted_agent_json(client, user):
    response = login(client, user).post(
        "/jobs/new/",
        {"kind": "update", "text": "Add a Slack step", "agent_json": json.dumps(AGENT)},
    )
    job = GenerationJob.objects.get(owner=user)
    assert response["Location"] == detail_url(job)
    assert job.request == {"update_request": "Add a Slack step", "current_agent_json": AGENT}


def test_a_customize_job_takes_an_uploaded_agent(client, user):
    upload = SimpleUploadedFile("agent.json", json.dumps(AGENT).encode(), "application/json")
    response = login(client, user).post(
        "/jobs/new/", {"kind": "customize", "text": "Use my city", "agent_file": upload}
    )
    job = GenerationJob.objects.get(owner=user)
    assert response["Location"] == detail_url(job)
    assert job.request == {"modification_request": "Use my city", "template_agent_json": AGENT}


def field_errors(response, field: str) -> str:
    """The text of the error list shown in the form row of ``field``."""
    html = text_of(response)
    match = re.search(rf'field-{field}">\s*<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, re.S)
    assert match, f"no errors shown by {field}"
    return unescape(re.sub(r"<[^>]+>", " ", match.group(1)))


@pytest.mark.parametrize(
    ("data", "upload", "field", "message"),
    [
        ({"kind": "decompose", "text": ""}, None, "text", "This field is required."),
        ({"kind": "decompose", "text": "   "}, None, "text", "This field is required."),
        (
            {"kind": "decompose", "text": "x" * (MAX_TEXT_CHARS + 1)},
            None,
            "text",
            f"at most {MAX_TEXT_CHARS:,}",
        ),
        ({"kind": "update", "text": "change it"}, None, "agent_json", "This field is required."),
        (
            {"kind": "update", "text": "change it", "agent_json": "{nope"},
            None,
            "agent_json",
            "not valid JSON",
        ),
        (
            {"kind": "update", "text": "change it", "agent_json": "[1, 2]"},
            None,
            "agent_json",
            "Must be a JSON object.",
        ),
        (
            {"kind": "update", "text": "change it", "agent_json": '{"nodes": {}}'},
            None,
            "agent_json",
            "nodes: Must be a list.",
        ),
        (
            {"kind": "customize", "text": "change it"},
            b"this is not json",
            "agent_file",
            "The file is not valid JSON",
        ),
        (
            {"kind": "customize", "text": "change it"},
            b'"just a string"',
            "agent_file",
            "Must be a JSON object.",
        ),
        (
            {"kind": "customize", "text": "change it"},
            b"\xff\xfe\x00garbage",
            "agent_file",
            "not",
        ),
        (
            {"kind": "customize", "text": "change it"},
            b"{" + b" " * MAX_AGENT_JSON_BYTES + b"}",
            "agent_file",
            f"the largest read is {MAX_AGENT_JSON_BYTES:,} bytes",
        ),
        (
            {"kind": "customize", "text": "change it", "agent_json": json.dumps(AGENT)},
            json.dumps(AGENT).encode(),
            "agent_json",
            "not both",
        ),
    ],
)
def test_new_job_field_errors_are_shown_by_the_field(client, user, data, upload, field, message):
    files = {"agent_file": SimpleUploadedFile("a.json", upload)} if upload is not None else {}
    response = login(client, user).post("/jobs/new/", {**data, **files})
    assert response.status_code == 200
    assert message in field_errors(response, field)
    assert "errornote" in text_of(response)
    assert not GenerationJob.objects.exists()


def test_the_active_jobs_limit_is_a_form_error(client, user, settings):
    settings.COPILOT_MAX_ACTIVE_JOBS_PER_USER = 1
    submit(user)
    response = login(client, user).post("/jobs/new/", {"kind": "decompose", "text": "another"})
    assert response.status_code == 200
    assert "already has 1 active job(s); the limit is 1" in text_of(response)
    assert GenerationJob.objects.count() == 1


def test_the_new_job_form_needs_its_csrf_token(user):
    client = login(Client(enforce_csrf_checks=True), user)
    refused = client.post("/jobs/new/", {"kind": "decompose", "text": GOAL})
    assert refused.status_code == 403
    assert not GenerationJob.objects.exists()
    page = text_of(client.get("/jobs/new/"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    accepted = client.post(
        "/jobs/new/", {"kind": "decompose", "text": GOAL, "csrfmiddlewaretoken": token}
    )
    assert accepted.status_code == 302
    assert GenerationJob.objects.count() == 1


def test_a_suggested_goal_prefills_the_new_job_form(client, user):
    page = text_of(login(client, user).get("/jobs/new/", {"kind": "decompose", "goal": XSS}))
    assert XSS not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</textarea>" in page


def test_state_changes_are_post_only(client, user):
    job = submit(user)
    login(client, user)
    for action in ["cancel", "retry", "answer", "generate"]:
        assert client.get(f"/jobs/{job.id}/{action}/").status_code == 405
    job.refresh_from_db()
    assert job.status == Status.QUEUED


# --- the job page ---------------------------------------------------------------------------


def test_an_active_job_page_follows_the_stream(client, user):
    job = run(submit(user))
    events.job_progress(job_id=job.id, percent=40, phase="matching blocks")
    job.refresh_from_db()
    page = text_of(login(client, user).get(detail_url(job)))
    assert f'data-events-url="/jobs/{job.id}/events"' in page
    assert f'data-last-event-id="{job.last_event_seq}"' in page
    assert 'data-heartbeat-ms="15000"' in page
    assert "data-stream-state" in page and "data-stream-reconnect" in page
    assert "copilot/stream.js" in page and "copilot/job_page.js" in page
    assert 'value="40"' in page and "matching blocks" in page
    # The log so far, rendered server-side, one line per event.
    assert page.count("<li data-seq=") == job.last_event_seq == 4
    assert "#4 progress 40% matching blocks" in page


def test_a_finished_job_page_opens_no_stream(client, user):
    job = complete(submit(user), {"type": "vague_goal", "suggested_goal": "Be precise"})
    page = text_of(login(client, user).get(detail_url(job)))
    assert "data-copilot-stream" not in page and "copilot/stream.js" not in page


def test_stop_is_offered_while_active_and_stops_a_queued_job(client, user):
    job = submit(user)
    login(client, user)
    page = text_of(client.get(detail_url(job)))
    assert f'action="/jobs/{job.id}/cancel/"' in page
    assert f'action="/jobs/{job.id}/retry/"' not in page
    response = client.post(f"/jobs/{job.id}/cancel/", follow=True)
    assert response.redirect_chain == [(detail_url(job), 302)]
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    page = text_of(response)
    assert "The job was stopped." in page
    assert f'action="/jobs/{job.id}/cancel/"' not in page
    assert f'action="/jobs/{job.id}/retry/"' in page
    assert ERROR_SENTENCES["cancelled"] in page


def test_stop_on_a_running_job_asks_its_runner(client, user):
    job = run(submit(user))
    response = login(client, user).post(f"/jobs/{job.id}/cancel/", follow=True)
    job.refresh_from_db()
    assert job.status == Status.RUNNING and job.cancel_requested_at is not None
    page = text_of(response)
    assert "Stop requested" in page and "(stop requested)" in page
    assert f'action="/jobs/{job.id}/cancel/"' not in page
    assert job.events.filter(type="cancel_requested").count() == 1


@pytest.mark.parametrize("error_type", sorted(ERROR_SENTENCES))
def test_a_failed_job_explains_itself_and_offers_retry(client, user, error_type):
    job = fail(submit(user), error_type=error_type)
    login(client, user)
    page = text_of(client.get(detail_url(job)))
    assert ERROR_SENTENCES[error_type] in unescape(page)
    assert f'action="/jobs/{job.id}/retry/"' in page
    assert f'action="/jobs/{job.id}/cancel/"' not in page


def test_retry_starts_a_new_attempt(client, user):
    job = fail(submit(user))
    response = login(client, user).post(f"/jobs/{job.id}/retry/", follow=True)
    job.refresh_from_db()
    assert (job.status, job.attempt, job.error_type) == (Status.QUEUED, 2, "")
    assert "attempt 2 is queued" in text_of(response)
    assert f'action="/jobs/{job.id}/cancel/"' in text_of(response)


def test_buttons_refuse_what_the_state_does_not_allow(client, user):
    job = complete(submit(user), {"type": "vague_goal", "suggested_goal": "x"})
    login(client, user)
    page = text_of(client.get(detail_url(job)))
    assert "/cancel/" not in page and "/retry/" not in page
    assert "already ended" in text_of(client.post(f"/jobs/{job.id}/cancel/", follow=True))
    assert "can be retried" in text_of(client.post(f"/jobs/{job.id}/retry/", follow=True))
    job.refresh_from_db()
    assert (job.status, job.attempt) == (Status.COMPLETED, 1)


def test_user_and_upstream_text_is_escaped_on_the_job_page(client, user):
    job = complete(
        submit(user, f"{XSS} goal"),
        {
            "type": "instructions",
            "steps": [{"description": f"step {XSS}", "action": XSS, "block_name": XSS}],
        },
    )
    page = text_of(login(client, user).get(detail_url(job)))
    assert XSS not in page
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 4


def test_instructions_are_listed(client, user):
    steps = [
        {"description": "Fetch the news", "action": "fetch", "block_name": "RSS Reader"},
        {"description": "Email me", "action": "send", "block_name": "Send Email"},
    ]
    job = complete(submit(user), {"type": "instructions", "steps": steps})
    page = text_of(login(client, user).get(detail_url(job)))
    assert re.search(r"Fetch the news.*RSS Reader.*Email me.*Send Email", page, re.S)


def test_instructions_can_be_generated_into_an_agent(client, user):
    instructions = {"type": "instructions", "steps": [{"description": "Fetch the news"}]}
    job = complete(submit(user), instructions)
    login(client, user)
    assert f'action="/jobs/{job.id}/generate/"' in text_of(client.get(detail_url(job)))
    response = client.post(f"/jobs/{job.id}/generate/")
    generate = GenerationJob.objects.exclude(pk=job.pk).get()
    assert response["Location"] == detail_url(generate)
    assert (generate.kind, generate.request) == ("generate", {"instructions": instructions})
    assert "Fetch the news" in text_of(client.get("/jobs/"))  # listed by its steps


def test_only_instructions_can_be_generated(client, user):
    job = complete(submit(user), QUESTIONS)
    page = text_of(login(client, user).get(detail_url(job)))
    assert "/generate/" not in page
    response = client.post(f"/jobs/{job.id}/generate/", follow=True)
    assert "no instructions" in text_of(response)
    assert GenerationJob.objects.count() == 1


@pytest.mark.parametrize("kind", ["unachievable_goal", "vague_goal"])
def test_a_suggested_goal_can_be_used_for_a_new_job(client, user, kind):
    result = {"type": kind, "suggested_goal": f"Summarise {XSS} daily"}
    if kind == "unachievable_goal":
        result["reason"] = "No block reads minds"
    job = complete(submit(user), result)
    page = text_of(login(client, user).get(detail_url(job)))
    assert XSS not in page
    assert 'action="/jobs/new/"' in page
    escaped = "Summarise &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; daily"
    assert f'name="goal" value="{escaped}"' in page
    assert ("No block reads minds" in page) == (kind == "unachievable_goal")


def test_an_error_result_is_explained(client, user):
    result = {"type": "error", "error": "The model refused", "error_type": "job_failed"}
    job = complete(submit(user), result)
    page = text_of(login(client, user).get(detail_url(job)))
    assert ERROR_SENTENCES["job_failed"] in unescape(page) and "The model refused" in page


# --- clarifying questions -------------------------------------------------------------------

QUESTIONS = {
    "type": "clarifying_questions",
    "questions": [
        {"question": f"Which news {XSS}?", "keyword": "source", "example": f"BBC {XSS}"},
        {"question": "When?", "keyword": "time"},
    ],
}


def test_clarifying_questions_are_a_form(client, user):
    job = complete(submit(user), QUESTIONS)
    page = text_of(login(client, user).get(detail_url(job)))
    assert XSS not in page
    assert f'action="/jobs/{job.id}/answer/"' in page
    assert "Which news &lt;script&gt;" in page and "For example: BBC &lt;script&gt;" in page
    assert 'name="answer_0"' in page and 'name="answer_1"' in page


def test_answers_start_a_follow_up_job(client, user):
    job = complete(submit(user), QUESTIONS)
    response = login(client, user).post(
        f"/jobs/{job.id}/answer/", {"answer_0": "The Guardian", "answer_1": ""}
    )
    follow_up = GenerationJob.objects.exclude(pk=job.pk).get()
    assert response.status_code == 302 and response["Location"] == detail_url(follow_up)
    assert (follow_up.kind, follow_up.owner, follow_up.status) == ("decompose", user, "queued")
    description = follow_up.request["description"]
    assert description.startswith(GOAL + "\n\n")
    assert f"Which news {XSS}? (source): The Guardian" in description
    assert "When?" not in description


def test_answers_need_at_least_one_answer(client, user):
    job = complete(submit(user), QUESTIONS)
    response = login(client, user).post(f"/jobs/{job.id}/answer/", {"answer_0": " "})
    assert response.status_code == 200
    assert "Answer at least one question." in text_of(response)
    assert GenerationJob.objects.count() == 1


def test_a_job_without_questions_takes_no_answers(client, user):
    job = complete(submit(user), {"type": "vague_goal", "suggested_goal": "x"})
    response = login(client, user).post(f"/jobs/{job.id}/answer/", {"answer_0": "yes"})
    assert response.status_code == 302 and response["Location"] == detail_url(job)
    assert GenerationJob.objects.count() == 1


# --- a generated agent ----------------------------------------------------------------------


def test_a_generated_agent_is_drawn_beside_its_json(client, user):
    agent = json.loads(json.dumps(AGENT))
    agent["name"] = f"Digest {XSS}"
    try:
        from agent_generator.reference.catalogue import BLOCKS
    except ImportError:  # without the reference catalogue, a node's block is unknown
        expected = "Unknown block"
    else:
        agent["nodes"][1]["block_id"] = BLOCKS[0].id
        expected = BLOCKS[0].name
    job = complete(submit(user, kind="generate"), {"type": "agent", "agent_json": agent})
    page = text_of(login(client, user).get(detail_url(job)))
    assert XSS not in page
    assert 'data-agent-diagram="agent-diagram-data"' in page and "copilot/agent_diagram.js" in page
    data = re.search(
        r'<script id="agent-diagram-data" type="application/json">(.*?)</script>', page, re.S
    ).group(1)
    diagram = json.loads(data)
    assert [n["label"] for n in diagram["nodes"]] == ["Unknown block", expected]
    assert diagram["links"] == [
        {
            "source": "n1",
            "sink": "n2",
            "source_name": "out",
            "sink_name": "in",
            "label": "out \u2192 in",
        }
    ]
    assert "&quot;name&quot;: &quot;Digest &lt;script&gt;" in page  # the pretty JSON, escaped
    assert f'href="/jobs/{job.id}/agent.json"' in page


def test_the_agent_downloads_as_a_json_file(client, user):
    job = complete(submit(user, kind="generate"), {"type": "agent", "agent_json": AGENT})
    response = login(client, user).get(f"/jobs/{job.id}/agent.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="agent-{job.id}.json"'
    assert json.loads(response.content) == AGENT


def test_a_job_without_an_agent_has_no_download(client, user):
    job = complete(submit(user), QUESTIONS)
    assert login(client, user).get(f"/jobs/{job.id}/agent.json").status_code == 404
