"""The Content-Security-Policy: on every page, with a fresh nonce, and pages that keep to it.

Each page is fetched with Django's test client and its markup parsed: an inline script or
style must carry the header's nonce, and no element may have a ``style=""`` attribute or an
``on…=`` event handler (the policy blocks both). The browser's own verdict is
tests/e2e/test_csp.py.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.http import HttpResponse
from django.template import engines
from django.test import Client, RequestFactory
from django.urls import reverse

from copilot.jobs import events, services, transitions
from copilot.jobs.models import ApiToken, GenerationJob
from copilot.web.csp import PageNonceCSPMiddleware

pytestmark = pytest.mark.django_db

AGENT = {
    "id": "agent-1",
    "name": "News digest",
    "nodes": [
        {"id": "n1", "block_id": "rss", "input_default": {}, "metadata": {}},
        {"id": "n2", "block_id": "email", "input_default": {}, "metadata": {}},
    ],
    "links": [
        {"id": "l1", "source_id": "n1", "sink_id": "n2", "source_name": "out", "sink_name": "in"}
    ],
}
RESULTS = {
    "agent": {"type": "agent", "agent_json": AGENT},
    "instructions": {"type": "instructions", "steps": [{"description": "Fetch the news"}]},
    "clarifying_questions": {
        "type": "clarifying_questions",
        "questions": [{"question": "Which news?", "keyword": "source", "example": "BBC"}],
    },
    "vague_goal": {"type": "vague_goal", "suggested_goal": "Email me the BBC's top story"},
    "error": {"type": "error", "error": "The model refused", "error_type": "job_failed"},
}
# Script types a browser does not run, so the policy does not apply to them (json_script).
DATA_SCRIPT_TYPES = {"application/json"}


def submit(user) -> GenerationJob:
    return services.job_submit(
        user=user, kind="decompose", payload={"description": "Email me the news at 8"}
    )


def running(user) -> GenerationJob:
    job = transitions.job_mark_submitting(job=submit(user)).job
    job = transitions.job_mark_running(job=job, upstream_job_id="up-1").job
    events.job_progress(job_id=job.id, percent=40, phase="Looking for blocks")
    return GenerationJob.objects.get(pk=job.pk)


def completed(user, result: dict) -> GenerationJob:
    return transitions.job_complete(job=running(user), result=result).job


def client_for(client: Client, user) -> Client:
    client.force_login(user)
    return client


def job_url(job: GenerationJob) -> str:
    return reverse("job_detail", kwargs={"job_id": job.id})


def policy_of(response) -> dict[str, list[str]]:
    """The Content-Security-Policy header as ``{directive: [values]}``."""
    header = response.headers.get("Content-Security-Policy")
    assert header, "no Content-Security-Policy header"
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def nonce_of(policy: dict[str, list[str]]) -> str:
    """The nonce of script-src, which style-src must share."""
    nonces = [v for v in policy["script-src"] if v.startswith("'nonce-")]
    assert len(nonces) == 1, policy["script-src"]
    assert nonces[0] in policy["style-src"]
    return nonces[0][len("'nonce-") : -1]


class Markup(HTMLParser):
    """Every start tag of a page, with its attributes, and the <script>s and <style>s."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def inline(self) -> list[tuple[str, dict[str, str | None]]]:
        """Inline scripts (not data blocks, not src=) and <style> elements."""
        return [
            (tag, attrs)
            for tag, attrs in self.tags
            if tag == "style"
            or (
                tag == "script"
                and "src" not in attrs
                and (attrs.get("type") or "").lower() not in DATA_SCRIPT_TYPES
            )
        ]


def check_page(response, *, status: int = 200) -> Markup:
    """The page has the policy, a nonce, and nothing in its markup the policy would block."""
    assert response.status_code == status, response.status_code
    assert response["Content-Type"].startswith("text/html")
    policy = policy_of(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"][0] == "'self'" and len(policy["script-src"]) == 2
    assert policy["style-src"][0] == "'self'" and len(policy["style-src"]) == 2
    assert "'unsafe-inline'" not in str(policy) and "'unsafe-eval'" not in str(policy)
    assert policy["img-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    nonce = nonce_of(policy)

    markup = Markup()
    markup.feed(response.content.decode())
    markup.close()
    for tag, attrs in markup.tags:
        assert "style" not in attrs, f"<{tag} style={attrs['style']!r}>"
        handlers = [name for name in attrs if name.startswith("on")]
        assert not handlers, f"<{tag} {handlers}>"
        for name in ("href", "src", "action"):
            value = attrs.get(name) or ""
            assert not value.lower().startswith("javascript:"), f"<{tag} {name}={value!r}>"
    for tag, attrs in markup.inline():
        assert attrs.get("nonce") == nonce, f"<{tag}> without the response's nonce: {attrs}"
    return markup


def test_the_login_pages(client):
    check_page(client.get(reverse("login")))
    check_page(client.get(reverse("admin:login")))
    wrong = {"username": "alice", "password": "wrong"}
    check_page(client.post(reverse("login"), wrong))  # with the form's error


@pytest.mark.parametrize("url", ["login", "admin:login"])
def test_the_lockout_pages(client, user, settings, url):
    """After too many failed logins, the login page saying so (django-axes, 429)."""
    wrong = {"username": "alice", "password": "wrong"}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse(url), wrong)
    markup = check_page(client.post(reverse(url), wrong), status=429)
    assert ("p", {"class": "errornote", "id": "lockout-note", "role": "alert"}) in markup.tags


def test_the_portal_pages(client, user):
    client.force_login(user)
    check_page(client.get(reverse("job_list")))
    submit(user)
    check_page(client.get(reverse("job_list")))
    for kind in GenerationJob.Kind.values:
        check_page(client.get(reverse("job_new"), {"kind": kind}))
    # A form with errors.
    check_page(client.post(reverse("job_new"), {"kind": "decompose", "text": ""}))


def test_the_job_page_while_the_job_runs(client, user):
    job = running(user)
    markup = check_page(client_for(client, user).get(job_url(job)))
    modules = [a["src"] for t, a in markup.tags if t == "script" and a.get("type") == "module"]
    assert modules == ["/static/copilot/job_page_main.js"]


@pytest.mark.parametrize("result_type", sorted(RESULTS))
def test_the_job_page_with_each_result(client, user, result_type):
    job = completed(user, RESULTS[result_type])
    markup = check_page(client_for(client, user).get(job_url(job)))
    data = [a for t, a in markup.tags if t == "script" and a.get("type") == "application/json"]
    assert bool(data) == (result_type == "agent")  # the diagram's data, which does not run


def test_a_failed_job_page(client, user):
    job = transitions.job_mark_submitting(job=submit(user)).job
    job = transitions.job_fail(job=job, error_type="rate_limit", error_message="429").job
    check_page(client_for(client, user).get(job_url(job)))


def test_every_admin_page(client, django_user_model, user):
    """The index, and each registered model's list, add form and an object's page."""
    root = django_user_model.objects.create_superuser("root", password="root-pass-1")
    client.force_login(root)
    job = completed(user, RESULTS["agent"])
    ApiToken.objects.create(user=user, name="ci", key_hash="0" * 64)
    Group.objects.create(name="operators")
    request = RequestFactory().get("/admin/")
    request.user = root
    check_page(client.get(reverse("admin:index")))
    for model, model_admin in admin.site._registry.items():
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        check_page(client.get(reverse(f"{name}_changelist")))
        if model_admin.has_add_permission(request):
            check_page(client.get(reverse(f"{name}_add")))
        first = model._default_manager.first()
        if first is not None:
            check_page(client.get(reverse(f"{name}_change", args=[first.pk])))
    check_page(client.get(reverse("admin:copilot_generationjob_changelist"), {"q": "news"}))
    change = check_page(client.get(reverse("admin:copilot_generationjob_change", args=[job.id])))
    # The job's JSON is in <pre>s styled by a stylesheet, not by style="" attributes.
    pres = [a for t, a in change.tags if t == "pre" and a.get("class") == "copilot-json-pre"]
    assert len(pres) >= 4  # request, result, and the events' data
    sheets = [a["href"] for t, a in change.tags if t == "link" and a.get("rel") == "stylesheet"]
    assert "/static/copilot/admin.css" in sheets


def test_each_response_has_its_own_nonce(client, user):
    client.force_login(user)
    nonces = {nonce_of(policy_of(client.get(reverse("job_list")))) for _ in range(3)}
    assert len(nonces) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9+/]{22}==", nonce) for nonce in nonces)


def test_an_inline_script_with_the_nonce_is_matched_by_the_header():
    """A template that uses ``request.csp_nonce`` gets the header's nonce, not another."""
    template = engines["django"].from_string(
        '<script nonce="{{ request.csp_nonce }}">1</script>'
        '<style nonce="{{ request.csp_nonce }}">p {}</style>'
    )
    middleware = PageNonceCSPMiddleware(
        lambda request: HttpResponse(template.render({}, request), content_type="text/html")
    )
    response = middleware(RequestFactory().get("/"))
    nonce = nonce_of(policy_of(response))
    markup = Markup()
    markup.feed(response.content.decode())
    assert [attrs["nonce"] for _, attrs in markup.inline()] == [nonce, nonce]


def test_json_responses_have_the_policy_without_a_nonce(client, user):
    client.force_login(user)
    response = client.get(reverse("api:jobs"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    policy = policy_of(response)
    assert policy["script-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
