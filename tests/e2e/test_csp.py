"""The Content-Security-Policy in a real browser: every page has it, and no page breaks it.

Chromium (Playwright) ──▶ proxy ──▶ Daphne (portal + runner) ──▶ reference Agent Generator, as
in test_browser.py. A person logs in, starts a decompose job, watches it run live and end with
its steps, generates the agent from them (a diagram drawn in SVG), and a staff member then
opens the admin's list and the job's page there. Every document's response must carry the
Content-Security-Policy header, and the browser must report no violation: each one is caught
twice, by a ``securitypolicyviolation`` listener installed before any script of the page
(recorded on ``window`` and on the Python side, so it survives the job page's reloads) and by
Chromium's console message. The test ends by breaking the policy on purpose, to show that
both catch what they should.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Page, Response, expect

from copilot.jobs.models import GenerationJob
from tests.e2e.conftest import PageRecorder
from tests.e2e.test_browser import (
    JOB_URL,
    log_in,
    wait_for_finished_page,
    wait_until_recorded,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CSP = "content-security-policy"
# A goal the reference service decomposes into steps (no question back), each a known block.
GOAL = (
    "Every weekday at 8am, search the web for the latest news about electric cars, "
    "summarise the top 5 articles in bullet points and email the summary to ana@example.com"
)
VIOLATION_SCRIPT = """
(() => {
  window.cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    const violation = {
      directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample,
      source: e.sourceFile, line: e.lineNumber, path: location.pathname,
    };
    window.cspViolations.push(violation);
    if (typeof window.e2eRecord === "function") {
      window.e2eRecord(Object.assign({kind: "csp"}, violation)).catch(() => {});
    }
  }, true);
})();
"""


@dataclass
class CspWatch:
    """The CSP header of every document the page loaded, and every violation it reported."""

    page: Page
    recorder: PageRecorder
    documents: list[Response] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.console.append(message.text)

    def on_response(self, response: Response) -> None:
        if response.request.resource_type == "document" and response.frame == self.page.main_frame:
            self.documents.append(response)

    def violations(self) -> list[dict]:
        return [r for r in self.recorder.records if r["kind"] == "csp"]

    def check(self, what: str) -> None:
        """The page shown now came with the policy, and nothing broke it so far."""
        path = urlsplit(self.page.url).path
        mine = [r for r in self.documents if urlsplit(r.url).path == path]
        assert mine, f"{what}: no document response seen for {path}"
        policy = mine[-1].all_headers().get(CSP, "")
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, (
            f"{what}: {path} has no Content-Security-Policy: {policy!r}"
        )
        assert "'nonce-" in policy, f"{what}: no nonce in {policy!r}"
        on_window = self.page.evaluate("() => window.cspViolations")
        assert on_window == [], f"{what}: {on_window}"
        assert self.violations() == [], f"{what}: {self.violations()}"
        assert self.console == [], f"{what}: {self.console}"
        assert self.recorder.page_errors == [], f"{what}: {self.recorder.page_errors}"


@pytest.fixture
def csp_watch(browser_page: Page, recorder: PageRecorder) -> CspWatch:
    watch = CspWatch(page=browser_page, recorder=recorder)
    browser_page.context.add_init_script(VIOLATION_SCRIPT)
    browser_page.on("console", watch.on_console)
    browser_page.on("response", watch.on_response)
    return watch


def start_decompose_job(page: Page) -> GenerationJob:
    """Fill in "New job" (decompose) with :data:`GOAL`; returns the job the page now shows."""
    page.fill("textarea[name=text]", GOAL)
    page.click("[data-new-job-form] input[type=submit]")
    page.wait_for_url(JOB_URL)
    return GenerationJob.objects.get(pk=uuid.UUID(JOB_URL.search(page.url)["id"]))


def follow_live(page: Page, *, recorder: PageRecorder, job: GenerationJob) -> None:
    """The job page follows the stream and its log grows with live events."""
    expect(page.locator("[data-stream-state]")).to_have_attribute("data-stream-state", "open")
    load = recorder.loads(f"/jobs/{job.id}/")[0]
    wait_until_recorded(
        page,
        lambda: len(set(recorder.event_ids(load["doc"])) - set(load["seqs"])) >= 2,
        what="live events",
        seconds=15,
    )
    last = max(recorder.event_ids(load["doc"]))
    expect(page.locator(f"[data-job-log] li[data-seq='{last}']")).to_be_attached()


def test_no_page_breaks_the_content_security_policy(
    start_portal,
    browser_page: Page,
    recorder: PageRecorder,
    csp_watch: CspWatch,
    person,
    screenshot,
):
    portal = start_portal(job_seconds=6, cut_after=None)
    page = browser_page

    page.goto(f"{portal.url}/accounts/login/")
    csp_watch.check("the login page")
    log_in(page, portal=portal, username=person.username)
    csp_watch.check("the new-job form")
    page.goto(f"{portal.url}/jobs/new/?kind=generate")
    csp_watch.check("the new-job form, generate")
    page.goto(f"{portal.url}/jobs/new/")

    # A decompose job, live, then its steps.
    decompose = start_decompose_job(page)
    follow_live(page, recorder=recorder, job=decompose)
    csp_watch.check("the job page while the job runs")
    wait_for_finished_page(page)
    expect(page.locator("[data-result-type]")).to_have_attribute("data-result-type", "instructions")
    csp_watch.check("the job page with the steps")

    # The agent from those steps, drawn as a diagram.
    page.get_by_role("button", name="Generate the agent from these steps").click()
    page.wait_for_url(lambda url: JOB_URL.search(url) is not None and str(decompose.id) not in url)
    generate = GenerationJob.objects.get(pk=uuid.UUID(JOB_URL.search(page.url)["id"]))
    assert generate.kind == GenerationJob.Kind.GENERATE
    follow_live(page, recorder=recorder, job=generate)
    csp_watch.check("the generate job's page while it runs")
    wait_for_finished_page(page)
    diagram = page.locator("figure[data-agent-diagram] svg g.node")
    expect(diagram.first).to_be_visible()
    assert diagram.count() >= 2
    screenshot("agent")
    csp_watch.check("the job page with the agent's diagram")

    page.goto(f"{portal.url}/jobs/")
    expect(page.locator(f"tr[data-job-id='{generate.id}']")).to_be_visible()
    csp_watch.check("the job list")

    # The admin, as staff.
    type(person).objects.filter(pk=person.pk).update(is_staff=True, is_superuser=True)
    page.goto(f"{portal.url}/admin/")
    csp_watch.check("the admin's index")
    page.goto(f"{portal.url}/admin/copilot/generationjob/")
    page.locator(f"input.action-select[value='{generate.id}']").check()  # admin/js/actions.js
    expect(page.locator(".action-counter")).to_contain_text("1 of 2 selected")
    csp_watch.check("the admin's job list")
    page.goto(f"{portal.url}/admin/copilot/generationjob/{generate.id}/change/")
    pre = page.locator("pre.copilot-json-pre").first
    expect(pre).to_be_visible()
    assert pre.evaluate("e => getComputedStyle(e).whiteSpace") == "pre-wrap"
    assert pre.evaluate("e => getComputedStyle(e).marginTop") == "0px"
    screenshot("admin")
    csp_watch.check("the admin's job page")

    # The watch catches what the policy blocks: a style attribute and an inline script.
    page.evaluate(
        """() => {
            document.body.setAttribute("style", "outline: 1px solid red");
            const script = document.createElement("script");
            script.textContent = "window.inlineRan = true";
            document.body.appendChild(script);
        }"""
    )
    wait_until_recorded(page, lambda: len(csp_watch.violations()) >= 2, what="the violations")
    directives = sorted(v["directive"] for v in csp_watch.violations())
    assert directives == ["script-src-elem", "style-src-attr"], csp_watch.violations()
    assert page.evaluate("() => window.inlineRan") is None
    assert len(page.evaluate("() => window.cspViolations")) == 2
    assert len(csp_watch.console) == 2, csp_watch.console
