"""End to end in a real browser: a job followed live through a proxy that cuts like a balancer.

Chromium (Playwright) ──▶ CuttingProxy ──▶ Daphne (portal + runner) ──▶ reference Agent
Generator, all real processes on 127.0.0.1. The user logs in, starts a job from "New job" and
watches the job page; the proxy cuts every connection after a few seconds (first test) or goes
down altogether (second test). What the page received is recorded on the Python side (see
``conftest.RECORDER_SCRIPT``), so it survives the page's reload when the job ends.

Each test saves a full-page screenshot of the finished job page in ``tests/e2e/screenshots/``.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter

import pytest
from playwright.sync_api import Page, expect

from copilot.jobs.models import GenerationJob, JobEvent
from tests.e2e.conftest import PASSWORD, PageRecorder, Portal

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GOAL = "Every morning at 8am, fetch the top tech news and email a summary to me@example.com"
JOB_URL = re.compile(r"/jobs/(?P<id>[0-9a-f-]{36})/$")
FINISH_TIMEOUT_MS = 45_000
RECONNECTING_TEXT = re.compile(r"^Reconnecting \(attempt [123] of 3\)…$")


def log_in(page: Page, *, portal: Portal, username: str) -> None:
    """Through the login form, as a person would; lands on "New job"."""
    page.goto(f"{portal.url}/accounts/login/?next=/jobs/new/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form input[type=submit]")
    expect(page).to_have_url(f"{portal.url}/jobs/new/")


def start_decompose_job(page: Page) -> GenerationJob:
    """Fill in "New job" (decompose) and submit; returns the job the page now shows."""
    expect(page.locator("nav.copilot-tabs li.selected")).to_have_text("Decompose a goal")
    page.fill("textarea[name=text]", GOAL)
    page.click("[data-new-job-form] input[type=submit]")
    page.wait_for_url(JOB_URL)
    job_id = uuid.UUID(JOB_URL.search(page.url)["id"])
    return GenerationJob.objects.get(pk=job_id)


def wait_for_finished_page(page: Page) -> None:
    """The job ended and the page reloaded itself: status, progress and result server-side."""
    expect(page.locator("[data-result-type]")).to_be_visible(timeout=FINISH_TIMEOUT_MS)
    expect(page.locator("[data-job-status-text]")).to_have_text("Completed")
    expect(page.locator("[data-job-percent]")).to_have_text("100%")
    expect(page.locator("[data-copilot-stream]")).to_have_count(0)  # nothing left to follow


def wait_until_recorded(page: Page, predicate, *, what: str, seconds: float = 5.0) -> None:
    """Let Playwright deliver the page's pending records until ``predicate()`` holds."""
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"the page never reported {what}")


def assert_every_event_shown_once(
    page: Page, *, recorder: PageRecorder, job: GenerationJob
) -> None:
    """Rendered at first load + received live = 1..last, each once; the final log is whole."""
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.COMPLETED
    last = job.last_event_seq
    stored = list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", flat=True))
    assert stored == list(range(1, last + 1))

    path = f"/jobs/{job.id}/"
    wait_until_recorded(
        page, lambda: not recorder.loads(path)[-1]["streaming"], what="the reloaded page"
    )
    loads = recorder.loads(path)
    assert loads[0]["streaming"], "the first load of the job page follows the stream"
    first = loads[0]["doc"]
    shown = loads[0]["seqs"] + recorder.event_ids(first)
    duplicates = [seq for seq, n in Counter(shown).items() if n > 1]
    assert not duplicates, f"events delivered more than once: {duplicates}"
    assert sorted(shown) == list(range(1, last + 1))
    live = recorder.event_ids(first)
    assert live, "some events arrived live, not only at the first load"
    assert live == sorted(live), "events arrived out of order"

    final = loads[-1]
    assert not final["streaming"] and final["seqs"] == list(range(1, last + 1))
    rendered = page.locator("[data-job-log] li").evaluate_all(
        "items => items.map(li => Number(li.dataset.seq))"
    )
    assert rendered == list(range(1, last + 1))
    assert recorder.page_errors == []


def test_a_job_cut_several_times_completes_on_screen_with_every_event_once(
    start_portal, browser_page: Page, recorder: PageRecorder, screenshot, person
):
    portal = start_portal(job_seconds=12, cut_after=3.0)
    page = browser_page
    log_in(page, portal=portal, username=person.username)
    job = start_decompose_job(page)
    expect(page.locator("[data-stream-state]")).to_have_attribute(
        "data-stream-state", "reconnecting", timeout=10_000
    )
    screenshot("reconnecting")

    wait_for_finished_page(page)
    path = screenshot()

    assert_every_event_shown_once(page, recorder=recorder, job=job)
    first = recorder.loads(f"/jobs/{job.id}/")[0]["doc"]
    states = recorder.states(first)
    names = [state for state, _ in states]
    assert names.count("reconnecting") >= 2, f"not cut several times while watching: {states}"
    assert any(
        state == "reconnecting" and RECONNECTING_TEXT.match(text) for state, text in states
    ), states
    assert names.count("open") >= 3, f"fewer connections than cuts: {states}"
    assert "lost" not in names, "a healthy stream cut on schedule must never be given up"
    assert names[-1] == "done"
    assert portal.proxy.stats().cut >= 3
    assert path.stat().st_size > 0


def go_down_until_lost(page: Page, *, portal: Portal, recorder: PageRecorder, doc: str) -> None:
    """Put the proxy down; the page tries 3 times, then says "Connection lost" and stops."""
    state = page.locator("[data-stream-state]")
    expect(state).to_have_attribute("data-stream-state", "open")
    expect(page.get_by_role("button", name="Reconnect")).to_be_hidden()
    before = len(recorder.states(doc))
    portal.proxy.set_down()
    expect(state).to_have_attribute("data-stream-state", "lost", timeout=20_000)
    expect(state).to_have_text("Connection lost")
    expect(page.get_by_role("button", name="Reconnect")).to_be_visible()
    wait_until_recorded(page, lambda: recorder.states(doc)[-1][0] == "lost", what="lost")
    outage = recorder.states(doc)[before:]
    texts = [text for name, text in outage if name == "reconnecting"]
    assert texts == [f"Reconnecting (attempt {n} of 3)…" for n in (1, 2, 3)], outage


def test_connection_lost_while_down_then_reconnect_recovers_and_the_job_completes(
    start_portal, browser_page: Page, recorder: PageRecorder, screenshot, person
):
    portal = start_portal(job_seconds=30, cut_after=None)
    page = browser_page
    log_in(page, portal=portal, username=person.username)
    job = start_decompose_job(page)
    doc = recorder.loads(f"/jobs/{job.id}/")[0]["doc"]
    state = page.locator("[data-stream-state]")
    reconnect = page.get_by_role("button", name="Reconnect")

    # 1. Down: given up after 3 attempts, and the page is not a dead end.
    go_down_until_lost(page, portal=portal, recorder=recorder, doc=doc)
    screenshot("lost")
    elapsed = page.locator("[data-job-elapsed]")
    expect(elapsed).not_to_have_text(elapsed.text_content() or "")  # the clock still ticks
    expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    expect(page.locator("[data-job-log] li").first).to_be_visible()
    assert JOB_URL.search(page.url)["id"] == str(job.id)  # no reload, no error page
    refused = portal.proxy.stats().refused
    page.wait_for_timeout(1500)  # longer than any backoff step left: nothing retries by itself
    assert portal.proxy.stats().refused == refused
    assert recorder.states(doc)[-1][0] == "lost"

    # Back up: the Reconnect button resumes the stream where it stopped.
    portal.proxy.set_up()
    reconnect.click()
    expect(state).to_have_attribute("data-stream-state", "open")
    expect(reconnect).to_be_hidden()
    seen = len(recorder.event_ids(doc))
    wait_until_recorded(
        page, lambda: len(recorder.event_ids(doc)) > seen, what="a live event", seconds=15
    )

    # 2. Down again; this time the browser's own "online" event brings it back.
    go_down_until_lost(page, portal=portal, recorder=recorder, doc=doc)
    portal.proxy.set_up()
    page.context.set_offline(True)
    page.context.set_offline(False)
    expect(state).to_have_attribute("data-stream-state", "open")

    wait_for_finished_page(page)
    screenshot()
    assert_every_event_shown_once(page, recorder=recorder, job=job)
    names = [name for name, _ in recorder.states(doc)]
    assert names.count("lost") == 2 and names[-1] == "done", names
    assert recorder.page_errors == []
