import test from "node:test";
import assert from "node:assert/strict";

import {
  announcement,
  endAnnouncement,
  endNotice,
  pageTitle,
  progressStep,
  titleState,
} from "../../static/copilot/job_status_text.js";
import { buttonState } from "../../static/copilot/job_notify.js";

test("the title starts with the percent while running and the end state once ended", () => {
  const base = "Decompose a goal job | Agent Copilot";
  assert.equal(pageTitle("queued", null, base), "Queued \u00b7 " + base);
  assert.equal(pageTitle("running", null, base), "Running \u00b7 " + base);
  assert.equal(pageTitle("running", 41.6, base), "42% \u00b7 " + base);
  assert.equal(titleState("completed", 100), "\u2713 Completed");
  assert.equal(titleState("failed", 40), "\u2717 Failed");
  assert.equal(titleState("timed_out", null), "\u2717 Timed out");
  assert.equal(titleState("cancelled", null), "\u25a0 Cancelled");
});

test("progress is counted in quarters, below the end", () => {
  assert.deepEqual(
    [null, 0, 24, 25, 49.9, 50, 76, 99, 100].map(progressStep),
    [-1, 0, 0, 25, 25, 50, 75, 75, 75],
  );
});

test("the live region speaks on a new status or a new quarter, never every tick", () => {
  const running = { status: "running", percent: 5, phase: "reading" };
  assert.equal(announcement({ status: "submitting", percent: null }, running),
    "Job running, 5% done: reading.");
  assert.equal(announcement({ status: "running", percent: 5 }, { status: "running", percent: 20 }),
    null);
  assert.equal(announcement({ status: "running", percent: 20 },
    { status: "running", percent: 28, phase: "matching" }), "Job running, 28% done: matching.");
  assert.equal(announcement({ status: "running", percent: 28 }, { status: "running", percent: 49 }),
    null);
  assert.equal(announcement({ status: "running", percent: 76 }, { status: "running", percent: 100 }),
    null); // the end is said by the page that shows the result
  assert.equal(announcement({ status: "running", percent: 50 }, { status: "completed" }), null);
  assert.equal(announcement(null, { status: "queued", percent: null }), "Job queued.");
});

test("the end is said and notified in words", () => {
  assert.equal(endAnnouncement("completed", "Decompose a goal job"), "Decompose a goal job completed.");
  assert.equal(endAnnouncement("timed_out", "X"), "X timed out.");
  assert.equal(endAnnouncement("cancelled", "X"), "X was cancelled.");
  assert.deepEqual(endNotice("completed", "X"), { title: "\u2713 Completed: X", body: "The result is ready." });
  assert.deepEqual(endNotice("failed", "X"), {
    title: "\u2717 Failed: X",
    body: "The job failed. Open it to see why.",
  });
});

test("the notify button says what the browser allows", () => {
  assert.deepEqual(buttonState(false, "unsupported", false), {
    text: "This browser cannot show notifications", pressed: false, disabled: true,
  });
  assert.deepEqual(buttonState(true, "denied", true), {
    text: "Notifications are blocked for this site", pressed: false, disabled: true,
  });
  assert.deepEqual(buttonState(true, "default", false), {
    text: "Notify me when it's done", pressed: false, disabled: false,
  });
  assert.deepEqual(buttonState(true, "granted", false), {
    text: "Notify me when it's done", pressed: false, disabled: false,
  });
  assert.deepEqual(buttonState(true, "granted", true), {
    text: "You will be notified when it's done", pressed: true, disabled: false,
  });
});
