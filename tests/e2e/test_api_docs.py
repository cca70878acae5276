"""The API's docs page in a real browser: Swagger UI renders under the portal's CSP.

Chromium (Playwright) ──▶ proxy ──▶ Daphne (portal + runner), as in test_csp.py. A person
logs in and opens ``/api/docs``: Swagger UI, from django-ninja's own static files (no other
origin is asked for anything), reads ``/api/openapi.json`` and shows every operation. With
"Try it out" the person lists their jobs and submits one, which the session and the page's
CSRF token authorise. No console error, no page error and no CSP violation on the way.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Request, expect

from copilot.jobs.models import GenerationJob
from tests.e2e.conftest import PageRecorder
from tests.e2e.test_browser import log_in
from tests.e2e.test_csp import VIOLATION_SCRIPT, CspWatch

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OPERATIONS = ["createJob", "listJobs", "getJob", "cancelJob", "retryJob"]
GOAL = "Every morning, fetch the news and email me a summary"


def operation(page: Page, operation_id: str):
    """An operation's block in Swagger UI (its id: ``operations-<tag>-<operationId>``)."""
    return page.locator(f"#operations-jobs-{operation_id}")


def try_it_out(page: Page, operation_id: str, *, body: str | None = None) -> str:
    """Open an operation, run it with "Try it out" (with ``body``), return the status shown."""
    block = operation(page, operation_id)
    block.locator(".opblock-summary").click()
    block.get_by_role("button", name="Try it out").click()
    if body is not None:
        block.locator("textarea.body-param__text").fill(body)
    block.get_by_role("button", name="Execute").click()
    status = block.locator(".live-responses-table .response .response-col_status").first
    expect(status).to_have_text(re.compile(r"^\s*\d{3}"), timeout=10_000)
    return status.inner_text().strip()


def test_the_api_docs_render_under_the_csp_and_work(
    start_portal, browser_page: Page, recorder: PageRecorder, person, screenshot
):
    portal = start_portal(job_seconds=6, cut_after=None)
    page = browser_page
    log_in(page, portal=portal, username=person.username)

    # From here on, everything the docs page does is watched.
    watch = CspWatch(page=page, recorder=recorder)
    page.context.add_init_script(VIOLATION_SCRIPT)
    page.on("response", watch.on_response)
    page.on("console", watch.on_console)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type in ("error", "warning") else None)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    origins: set[str] = set()

    def on_request(request: Request) -> None:
        if not request.url.startswith(("data:", "blob:")):
            origins.add(f"{urlsplit(request.url).scheme}://{urlsplit(request.url).netloc}")

    page.on("request", on_request)

    page.goto(f"{portal.url}/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Copilot portal API")
    for operation_id in OPERATIONS:
        expect(operation(page, operation_id)).to_be_visible()
    # The stylesheet draws some icons from data: URLs: this page's policy allows those.
    policy = watch.documents[-1].all_headers()["content-security-policy"]
    assert "img-src 'self' data:" in policy
    watch.check("the API docs")

    assert try_it_out(page, "listJobs") == "200"
    body = json.dumps({"kind": "decompose", "description": GOAL})
    assert try_it_out(page, "createJob", body=body) == "201"  # the session and X-CSRFToken
    job = GenerationJob.objects.get()
    assert (job.owner_id, job.request) == (person.pk, {"description": GOAL})
    screenshot("docs")
    watch.check("the API docs after trying it out")

    assert origins == {portal.url}, origins  # no CDN: every file came from the portal
    assert failed == [], failed
    assert console == [], console
