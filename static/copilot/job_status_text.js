/*
 * The words the job page uses for a job's state outside the page itself: the tab title, what
 * the live region announces, and the end notification. Pure functions, nothing run on import;
 * job_page.js and job_notify.js use them, Node tests them (tests/js/job_status_text.test.js).
 *
 * The tab title starts as copilot.web.display.title_state renders it ("42%" while running,
 * "✓ Completed" once ended) so a background tab shows the state at a glance.
 */

export const STATUS_LABELS = {
  queued: "Queued",
  submitting: "Submitting",
  running: "Running",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
  timed_out: "Timed out",
};
export const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);
const END_MARKS = { completed: "\u2713", failed: "\u2717", timed_out: "\u2717" };
/** Progress is announced when it crosses one of these (the end is announced by itself). */
const STEP = 25;

export function statusLabel(status) {
  return STATUS_LABELS[status] || String(status || "");
}

/** The title's first part, as the server renders it: "42%", "Queued", "✓ Completed". */
export function titleState(status, percent) {
  const label = statusLabel(status);
  if (TERMINAL.has(status)) return (END_MARKS[status] || "\u25a0") + " " + label;
  if (status === "running" && typeof percent === "number") return Math.round(percent) + "%";
  return label;
}

/** The whole tab title: "<state> · <base>", base being e.g. "Decompose a goal job | Agent Copilot". */
export function pageTitle(status, percent, base) {
  return titleState(status, percent) + " \u00b7 " + base;
}

/** The last multiple of STEP that `percent` reached (-1 for no percent), capped below 100. */
export function progressStep(percent) {
  if (typeof percent !== "number" || !Number.isFinite(percent)) return -1;
  return Math.min(Math.floor(Math.max(0, percent) / STEP) * STEP, 100 - STEP);
}

/**
 * What the live region says when the page learns `next` ({status, percent, phase}) after
 * `previous` (the same, as last announced), or null when nothing is worth saying: a new status,
 * or progress crossing the next 25 %, never every tick. Ends are said by endAnnouncement.
 */
export function announcement(previous, next) {
  if (!next || !next.status || TERMINAL.has(next.status)) return null;
  const statusChanged = !previous || previous.status !== next.status;
  const stepped = progressStep(next.percent) > progressStep(previous ? previous.percent : null);
  const crossed = stepped && progressStep(next.percent) > 0;
  if (!statusChanged && !crossed) return null;
  let text = "Job " + statusLabel(next.status).toLowerCase();
  if (typeof next.percent === "number") text += ", " + Math.round(next.percent) + "% done";
  if (next.phase) text += ": " + String(next.phase);
  return text + ".";
}

const END_WORDS = {
  completed: "completed",
  failed: "failed",
  timed_out: "timed out",
  cancelled: "was cancelled",
};

/** What the live region says once a job has ended (on the page reloaded with its result). */
export function endAnnouncement(status, jobName) {
  return jobName + " " + (END_WORDS[status] || "ended") + ".";
}

/** The notification for a job that ended: {title, body}; the tag makes a repeat replace it. */
export function endNotice(status, jobName) {
  return {
    title: titleState(status, null) + ": " + jobName,
    body:
      status === "completed"
        ? "The result is ready."
        : "The job " + (END_WORDS[status] || "ended") + ". Open it to see why.",
  };
}
