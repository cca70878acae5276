/*
 * The job page's live part: applies the events the stream delivers to what the page shows.
 *
 * The page is rendered server-side with the events so far; stream_page.js (attach, over the
 * JobStream of stream.js) follows the job's stream from the last of them and fires
 * `copilot:event` ({id, type, data}) on the [data-copilot-stream] section. For each event this
 * module updates the status, the progress bar and phase, the Stop button, and appends a line to
 * the event log (text only, the same words as copilot.presenters.event_line). When the job ends
 * it reloads the page, which then shows the result server-side. It also ticks the elapsed time
 * while the job runs.
 *
 * It also keeps the tab title on the job's state, says status changes and progress at every
 * 25 % in the polite live region [data-job-announce] (job_status_text.js has the words), and
 * binds "Notify me when it's done" (job_notify.js); the page reloaded at the job's end says the
 * end there and notifies.
 *
 * A plain ES module with nothing run on import: job_page_main.js calls start(window) on the
 * page; Node imports {eventLine, formatElapsed} for tests.
 */
import { bindButton, notifyEnd, rememberEnd, takeEnd } from "./job_notify.js";
import {
  STATUS_LABELS,
  TERMINAL,
  announcement,
  endAnnouncement,
  pageTitle,
} from "./job_status_text.js";


const RELOAD_DELAY_MS = 400;
/** A live region's change is heard only once the region is in the page: wait a moment. */
const ANNOUNCE_DELAY_MS = 500;

function resultSummary(result) {
  if (!result || typeof result !== "object") return "no result";
  const type = result.type || "result";
  const count = (list) => (Array.isArray(list) ? list.length : 0);
  if (type === "instructions") return "instructions (" + count(result.steps) + " steps)";
  if (type === "clarifying_questions") {
    return "clarifying questions (" + count(result.questions) + ")";
  }
  if (type === "agent") {
    const agent = result.agent_json || {};
    return "agent (" + count(agent.nodes) + " nodes, " + count(agent.links) + " links)";
  }
  return String(type).replace(/_/g, " ");
}

/** One line for an event, as copilot.presenters.event_line writes it. */
export function eventLine(evt) {
  const data = evt.data && typeof evt.data === "object" ? evt.data : {};
  const head = "#" + evt.id + " " + evt.type;
  const text = (value) => (value === undefined || value === null ? "" : String(value));
  switch (evt.type) {
    case "progress": {
      const percent = data.percent === undefined || data.percent === null ? "?" : data.percent;
      return (head + " " + percent + "% " + text(data.phase)).trimEnd();
    }
    case "result":
      return head + " " + text(data.status) + ": " + resultSummary(data.result);
    case "error":
      return (
        head + " " + text(data.status) + ": " + text(data.error_type) + ": " +
        text(data.error_message)
      );
    default:
      break;
  }
  if ("upstream_status" in data) {
    return head + " " + text(data.status) + " (upstream " + text(data.upstream_status) + ")";
  }
  if (evt.type === "retry") return head + " attempt " + text(data.attempt);
  if (evt.type === "cancel_requested") return head + " by " + text(data.by);
  return (head + " " + text(data.status)).trimEnd();
}

/** "m:ss" or "h:mm:ss", as the server renders elapsed times. */
export function formatElapsed(ms) {
  let seconds = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  const two = (n) => (n < 10 ? "0" : "") + n;
  return hours ? hours + ":" + two(minutes) + ":" + two(seconds) : minutes + ":" + two(seconds);
}

export function start(win) {
  const doc = win.document;
  const page = doc.querySelector("[data-job-page]");
  if (!page) return null;
  const streamRoot = doc.querySelector("[data-copilot-stream]");
  const q = (selector) => page.querySelector(selector);
  const initialStatus = page.getAttribute("data-job-status");
  const initialAttempt = (q("[data-job-attempt]") || {}).textContent;
  let startedAt = Date.parse(page.getAttribute("data-started-at") || "") || null;
  let ticker = null;
  let reloading = false;
  const jobId = page.getAttribute("data-job-id");
  const jobName = page.getAttribute("data-job-name") || "The job";
  const titleBase = page.getAttribute("data-title-base");
  const announcer = q("[data-job-announce]");
  const bar = q("[data-job-progress]");
  const barValue = bar && bar.getAttribute("value");
  // What the page shows, and what the live region last said of it.
  const shown = { status: initialStatus, percent: barValue ? Number(barValue) : null, phase: "" };
  let announced = { status: shown.status, percent: shown.percent };

  function say(text) {
    if (announcer && text) announcer.textContent = text;
  }

  function showState() {
    if (titleBase) doc.title = pageTitle(shown.status, shown.percent, titleBase);
    const text = announcement(announced, shown);
    if (text) {
      say(text);
      announced = { status: shown.status, percent: shown.percent };
    }
  }

  function ended(status) {
    if (TERMINAL.has(status)) rememberEnd(win, jobId, status);
  }

  function tick() {
    const elapsed = q("[data-job-elapsed]");
    if (elapsed && startedAt) elapsed.textContent = formatElapsed(Date.now() - startedAt);
  }

  function stopTicking() {
    if (ticker !== null) win.clearInterval(ticker);
    ticker = null;
  }

  function reloadSoon() {
    if (reloading) return;
    reloading = true;
    stopTicking();
    win.setTimeout(() => win.location.reload(), RELOAD_DELAY_MS);
  }

  function showStatus(status) {
    const badge = q("[data-job-status-text]");
    if (!badge || !status) return;
    badge.textContent = STATUS_LABELS[status] || status;
    badge.className = "copilot-status copilot-status--" + status;
    page.setAttribute("data-job-status", status);
    shown.status = status;
    if (status === "submitting" && !startedAt) startedAt = Date.now();
  }

  function showProgress(progress) {
    if (!progress || typeof progress !== "object") return;
    const percentText = q("[data-job-percent]");
    const phase = q("[data-job-phase]");
    const percent = typeof progress.percent === "number" ? progress.percent : null;
    if (bar) {
      if (percent === null) bar.removeAttribute("value");
      else bar.value = percent;
    }
    if (percentText) percentText.textContent = percent === null ? "" : percent + "%";
    if (phase) phase.textContent = progress.phase ? String(progress.phase) : "";
    shown.percent = percent;
    shown.phase = progress.phase ? String(progress.phase) : "";
  }

  function appendLine(evt) {
    const log = q("[data-job-log]");
    if (!log || evt.id === null || evt.id === undefined) return;
    if (log.querySelector('li[data-seq="' + Number(evt.id) + '"]')) return;
    const item = doc.createElement("li");
    item.setAttribute("data-seq", String(evt.id));
    item.className = "copilot-log__" + String(evt.type).replace(/[^a-z_]/g, "");
    item.textContent = eventLine(evt);
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
  }

  function onEvent(evt) {
    const data = evt.data && typeof evt.data === "object" ? evt.data : {};
    if (evt.type === "snapshot") {
      // A fresh connection's view of the job: catch up, or reload if it moved on without us.
      showStatus(data.status);
      showProgress(data.progress);
      showState();
      if (TERMINAL.has(data.status) && !TERMINAL.has(initialStatus)) ended(data.status);
      if (
        (TERMINAL.has(data.status) && !TERMINAL.has(initialStatus)) ||
        (data.attempt !== undefined && String(data.attempt) !== String(initialAttempt).trim())
      ) {
        reloadSoon();
      }
      return;
    }
    appendLine(evt);
    if (evt.type === "progress") showProgress(data);
    if (data.status) showStatus(data.status);
    if (evt.type === "cancel_requested") {
      const stop = q("[data-job-stop]");
      if (stop) stop.hidden = true;
    }
    showState();
    if (data.terminal === true) ended(data.status);
    if (data.terminal === true || evt.type === "retry") reloadSoon();
  }

  if (titleBase) doc.title = pageTitle(shown.status, shown.percent, titleBase);
  bindButton(win, q("[data-job-notify]"));
  const end = TERMINAL.has(initialStatus) ? takeEnd(win, jobId) : null;
  if (end !== null) {
    // This tab watched the job end and reloaded: say so, and notify if asked to.
    win.setTimeout(() => say(endAnnouncement(initialStatus, jobName)), ANNOUNCE_DELAY_MS);
    notifyEnd(win, jobId, initialStatus, jobName);
  }
  if (streamRoot) {
    streamRoot.addEventListener("copilot:event", (e) => onEvent(e.detail || {}));
    // Only a page that follows a stream loads the stream's modules (the template preloads them).
    import("./stream_page.js").then(({ attach }) => attach(streamRoot));
  }
  if (!TERMINAL.has(initialStatus)) {
    ticker = win.setInterval(tick, 1000);
    win.addEventListener("pagehide", stopTicking);
    win.addEventListener("pageshow", (event) => {
      if (event && event.persisted && ticker === null && !reloading) {
        ticker = win.setInterval(tick, 1000);
      }
    });
  }
  return { onEvent: onEvent, stop: stopTicking };
}
