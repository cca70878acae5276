"""Every page of the portal under axe-core in Chromium: no serious or critical WCAG 2.1 A/AA
violation, and one level-one heading each.

axe-core comes from npm (``npm install`` puts it in ``node_modules/``; ``make install`` runs it
when npm is there). It is evaluated into each page as Playwright evaluates any script (over the
DevTools protocol, not as a page script), so the pages keep their strict Content-Security-Policy
while axe looks at them.

The finished jobs (one per kind of result) are stored before the portal starts, so its runner
has nothing to pick up; the running job is a real one, on a slow reference Agent Generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from copilot.jobs import services, transitions
from copilot.jobs.models import GenerationJob
from tests.e2e.conftest import Portal
from tests.e2e.test_browser import log_in, start_decompose_job

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = {"serious", "critical"}
GOAL = "Every weekday at 8am, search the web for AI news and email a summary to ana@example.com"


@pytest.fixture
def axe_source() -> str:
    if not AXE.is_file():
        pytest.skip("axe-core is not installed (run `npm install` in the repository)")
    return AXE.read_text(encoding="utf-8")


def axe_violations(page: Page, *, source: str) -> list[dict]:
    """axe-core's serious and critical WCAG 2.1 A/AA violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(source)
    results = page.evaluate(
        "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_TAGS
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["html"][:200] for n in v["nodes"][:5]],
        }
        for v in results["violations"]
        if v["impact"] in BLOCKING
    ]


def page_problems(page: Page, *, source: str) -> list[dict]:
    """The page's blocking axe violations, and its level-one headings unless exactly one."""
    problems = axe_violations(page, source=source)
    headings = page.locator("h1").all_inner_texts()
    if len(headings) != 1:
        problems.append({"id": "one-h1", "headings": headings})
    return problems


def check_diagram(page: Page) -> None:
    """50 named steps, drawn at their natural size (the frame scrolls), reachable by keyboard,
    and listed as text."""
    figure = page.locator("[data-agent-diagram]")
    expect(figure.locator("svg g.node")).to_have_count(50)
    expect(figure.locator("svg g.node .node-name").first).to_have_text("1 · Schedule")
    expect(figure.locator("svg g.node .node-input").nth(3)).to_have_text("to: ana@example.com (+1)")
    drawn = figure.locator("svg").evaluate(
        "svg => [svg.getBoundingClientRect().height, Number(svg.getAttribute('height'))]"
    )
    assert drawn[0] == drawn[1] > 5000, drawn
    figure.focus()
    expect(figure).to_be_focused()
    expect(page.locator("[data-agent-steps] li")).to_have_count(50)


def agent(nodes: int = 3) -> dict:
    from agent_generator.reference.catalogue import block_by_name

    names = ["Schedule", "Web search", "Summarise text", "Send email"]
    inputs = [
        {"cron": "0 8 * * 1-5", "timezone": "UTC"},
        {"query": "AI news", "max_results": 5},
        {"max_words": 150},
        {"to": "ana@example.com", "subject": "AI news"},
    ]
    ports = [("message", "query"), ("results", "text"), ("summary", "body")]
    made = [
        {
            "id": f"node-{i}",
            "block_id": block_by_name(names[i % 4]).id,
            "input_default": inputs[i % 4],
            "metadata": {"position": {"x": 0, "y": i * 100}},
        }
        for i in range(nodes)
    ]
    links = [
        {
            "id": f"link-{i}",
            "source_id": f"node-{i}",
            "sink_id": f"node-{i + 1}",
            "source_name": ports[i % 3][0],
            "sink_name": ports[i % 3][1],
        }
        for i in range(nodes - 1)
    ]
    return {"id": "agent-1", "name": "AI digest", "description": "Mails news", "nodes": made,
            "links": links}  # fmt: skip


RESULTS = {
    "instructions": {
        "type": "instructions",
        "steps": [
            {"description": "Every weekday at 8am", "block_name": "Schedule", "action": "start"},
            {"description": "Search the web for AI news", "block_name": "Web search"},
            {"description": "Email a summary to ana@example.com", "block_name": "Send email"},
        ],
    },
    "questions": {
        "type": "clarifying_questions",
        "questions": [
            {"question": "Which email address?", "keyword": "email", "example": "a@b.example"},
            {"question": "What time?", "keyword": "time", "example": "8am"},
        ],
    },
    "error": {"type": "error", "error": "The copilot is confused", "error_type": "llm_error"},
    "vague": {"type": "vague_goal", "reason": "Too short", "suggested_goal": GOAL},
    "agent": {"type": "agent", "agent_json": agent(50)},  # large: the diagram must stay legible
}


@pytest.fixture
def finished_jobs(person) -> dict[str, GenerationJob]:
    """One job per kind of end a job page shows, stored as the runner would leave them.

    Made before ``chromium`` starts Playwright's event loop in this thread (the services
    publish events through ``async_to_sync``) and before the portal starts (nothing to run).
    """
    user = person
    jobs = {}
    for name, result in RESULTS.items():
        job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
        job = transitions.job_mark_submitting(job=job).job
        job = transitions.job_mark_running(job=job, upstream_job_id=f"up-{name}").job
        jobs[name] = transitions.job_complete(job=job, result=result).job
    job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
    job = transitions.job_mark_submitting(job=job).job
    jobs["failed"] = transitions.job_fail(
        job=job, error_type="service_unavailable", error_message="upstream said no"
    ).job
    return jobs


def test_every_page_is_clean_under_axe(finished_jobs, start_portal, chromium, person, axe_source):
    jobs = finished_jobs
    portal: Portal = start_portal(job_seconds=60, cut_after=None)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    found: dict[str, list[dict]] = {}
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{portal.url}/accounts/login/")
        found["the login page"] = page_problems(page, source=axe_source)
        log_in(page, portal=portal, username=person.username)
        for kind in GenerationJob.Kind.values:
            page.goto(f"{portal.url}/jobs/new/?kind={kind}")
            found[f"the new-job form ({kind})"] = page_problems(page, source=axe_source)
        page.goto(f"{portal.url}/jobs/new/")
        start_decompose_job(page)
        expect(page.locator("[data-job-status-text]")).to_have_text("Running", timeout=20_000)
        found["a running job"] = page_problems(page, source=axe_source)
        page.goto(f"{portal.url}/jobs/")
        found["the job list"] = page_problems(page, source=axe_source)
        for name, job in jobs.items():
            page.goto(f"{portal.url}/jobs/{job.id}/")
            if name == "agent":
                check_diagram(page)
            found[f"a finished job ({name})"] = page_problems(page, source=axe_source)
    finally:
        context.close()
    assert {what: problems for what, problems in found.items() if problems} == {}, json.dumps(
        found, indent=2
    )
    assert len(found) == 3 + len(GenerationJob.Kind.values) + len(jobs)  # every page looked at
    assert errors == []
