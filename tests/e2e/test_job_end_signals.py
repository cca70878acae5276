"""What tells a user, in Chromium, that a job moves on and ends while they look elsewhere: the
tab title, the polite live region, and the browser notification they asked for.

The page's ``Notification`` is wrapped by an init script that records every one made (title,
body, tag) on the Python side, as are the tab title and the live region's text each time they
change, so the records survive the page's own reload at the job's end.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import PAGE_TIMEOUT_MS, Portal
from tests.e2e.test_browser import (
    log_in,
    start_decompose_job,
    wait_for_finished_page,
    wait_until_recorded,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIGNALS_SCRIPT = """
(() => {
  const send = (kind, text) => {
    if (typeof window.e2eSignal !== "function") return;
    window.e2eSignal(kind, String(text)).catch(() => {});
  };
  const Real = window.Notification;
  if (typeof Real === "function") {
    class Recorded extends Real {
      constructor(title, options) {
        super(title, options);
        send("notification", JSON.stringify({title: title, body: (options || {}).body,
                                              tag: (options || {}).tag}));
      }
    }
    window.Notification = Recorded;
  }
  document.addEventListener("DOMContentLoaded", () => {
    send("title", document.title);
    const announcer = document.querySelector("[data-job-announce]");
    const watch = (target, report) => new MutationObserver(report)
      .observe(target, {subtree: true, childList: true, characterData: true});
    watch(document.querySelector("title"), () => send("title", document.title));
    if (announcer) watch(announcer, () => send("announce", announcer.textContent));
  });
})();
"""
NAME = "Decompose a goal job"


def test_title_live_region_and_notification_follow_the_job(start_portal, chromium, person):
    portal: Portal = start_portal(job_seconds=8, cut_after=None)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.grant_permissions(["notifications"], origin=portal.url)
    signals: list[tuple[str, str]] = []
    context.expose_function("e2eSignal", lambda kind, text: signals.append((kind, text)))
    context.add_init_script(SIGNALS_SCRIPT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        log_in(page, portal=portal, username=person.username)
        job = start_decompose_job(page)
        notify = page.locator("[data-job-notify]")
        expect(notify).to_have_text("Notify me when it's done")
        expect(notify).to_have_attribute("aria-pressed", "false")
        notify.click()
        expect(notify).to_have_attribute("aria-pressed", "true")
        expect(notify).to_have_text("You will be notified when it's done")
        expect(page.locator("progress[data-job-progress]")).to_have_attribute(
            "aria-label", "Job progress"
        )
        wait_for_finished_page(page)
        expect(page).to_have_title(f"\u2713 Completed \u00b7 {NAME} | Agent Copilot")
        expect(page.locator("[data-job-announce]")).to_have_text(f"{NAME} completed.")
        wait_until_recorded(
            page,
            lambda: ("announce", f"{NAME} completed.") in signals,
            what="the live region's last announcement",
        )
    finally:
        context.close()

    titles = [text for kind, text in signals if kind == "title"]
    assert any(re.match(rf"^\d+% \u00b7 {NAME} \| Agent Copilot$", t) for t in titles), titles
    assert titles[-1] == f"\u2713 Completed \u00b7 {NAME} | Agent Copilot"

    said = [text for kind, text in signals if kind == "announce" and text]
    assert said[-1] == f"{NAME} completed.", said
    progress = [text for text in said if re.search(r"\d+% done", text)]
    assert progress, said  # progress was said on the way, at 25 % steps only
    assert len(said) <= 8, said  # a status change or a quarter each, never every tick

    notices = [text for kind, text in signals if kind == "notification"]
    assert len(notices) == 1, notices
    assert f'"title":"\u2713 Completed: {NAME}"' in notices[0]
    assert f'"tag":"copilot-job-{job.id}"' in notices[0]
    assert errors == []


def test_without_permission_the_button_says_so(start_portal, chromium, person):
    """A denied permission: the button says so and is disabled; the job page works on."""
    portal: Portal = start_portal(job_seconds=30, cut_after=None)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.add_init_script(
        "Object.defineProperty(Notification, 'permission', {get: () => 'denied'});"
        "Notification.requestPermission = () => Promise.resolve('denied');"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        log_in(page, portal=portal, username=person.username)
        start_decompose_job(page)
        notify = page.locator("[data-job-notify]")
        expect(notify).to_have_text("Notifications are blocked for this site")
        expect(notify).to_be_disabled()
        expect(page.locator("[data-stream-state]")).to_have_text("Live")
    finally:
        context.close()
    assert errors == []
