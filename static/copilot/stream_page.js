/*
 * The stream's page binding: attach() follows a job's event stream (a JobStream, stream.js) for
 * the job page's [data-copilot-stream] section, shows its state there, and hands each event to
 * the page as a `copilot:event` DOM event.
 *
 * A plain ES module, no build and no dependencies, and nothing runs when it is imported: the
 * job page (job_page.js) imports it and calls attach(); Node imports it for
 * tests/js/stream_page.test.js.
 *
 * Page use:
 *   <section data-copilot-stream data-events-url="/jobs/<uuid>/events" data-last-event-id="0"
 *            data-heartbeat-ms="15000" data-login-url="/accounts/login/">
 *     <p data-stream-state></p> <button type="button" data-stream-reconnect hidden>Reconnect</button>
 *   </section>
 *   root.addEventListener("copilot:event", (e) => render(e.detail));  // {id, type, data}
 *   attach(root);  // import { attach } from "./stream_page.js";
 */
import { JobStream, parseSeq } from "./stream.js";

/** The text the page shows for a state (null: leave the text as it is). */
export function stateText(state, info) {
  info = info || {};
  switch (state) {
    case "connecting":
      if (info.planned) return null; // a planned rotation is invisible: keep "Live"
      return info.attempt > 0
        ? "Reconnecting (attempt " + info.attempt + " of " + (info.of || 3) + ")\u2026"
        : "Connecting\u2026";
    case "open":
      return "Live";
    case "reconnecting":
      return "Reconnecting (attempt " + info.attempt + " of " + info.of + ")\u2026";
    case "lost":
      return "Connection lost";
    case "done":
      return "Finished";
    case "gone":
      return "This job does not exist or is not yours.";
    case "unauthorized":
      return "Please log in again";
    case "stopped":
      return "Stopped";
    default:
      return null;
  }
}

function loginHref(rootElement, win) {
  const base = rootElement.getAttribute("data-login-url") || "/accounts/login/";
  const loc = win && win.location;
  if (!loc) return base;
  const next = encodeURIComponent(loc.pathname + (loc.search || ""));
  return base + (base.indexOf("?") === -1 ? "?" : "&") + "next=" + next;
}

/**
 * Bind a JobStream to a page element and start it. Reads data-events-url,
 * data-last-event-id, data-heartbeat-ms (and optional data-login-url) from rootElement, shows
 * the state in its child [data-stream-state] (whose attribute value becomes the state name,
 * handy for CSS and browser tests), shows button[data-stream-reconnect] only when the
 * connection is lost, and dispatches CustomEvent("copilot:event", {detail: evt}) on
 * rootElement for each event. Returns {stream, stop()}; `stream` is replaced by a fresh
 * JobStream when the page comes back from the back/forward cache.
 *
 * `options` are passed to JobStream (for tests: fetch, timers, eventTarget, ...), plus
 * `window` (default: the global window) and `document` (default: rootElement.ownerDocument).
 */
export function attach(rootElement, options) {
  const opts = Object.assign({}, options || {});
  const win = opts.window !== undefined ? opts.window : typeof window !== "undefined" ? window : null;
  const doc = opts.document || rootElement.ownerDocument;
  delete opts.window;
  delete opts.document;
  if (opts.eventTarget === undefined) opts.eventTarget = win;

  const stateEl = rootElement.querySelector("[data-stream-state]");
  const button = rootElement.querySelector("button[data-stream-reconnect]");
  const heartbeat = parseSeq(rootElement.getAttribute("data-heartbeat-ms") || "");
  const binding = { stream: null, stop: () => binding.stream && binding.stream.stop() };

  function render(state, info) {
    if (button) button.hidden = state !== "lost";
    if (!stateEl) return;
    stateEl.setAttribute("data-stream-state", state);
    const text = stateText(state, info);
    if (text === null) return;
    if (state === "unauthorized" && doc) {
      const link = doc.createElement("a");
      link.href = loginHref(rootElement, win);
      link.textContent = text;
      stateEl.textContent = "";
      stateEl.appendChild(link);
    } else {
      stateEl.textContent = text;
    }
  }

  function startStream(lastEventId) {
    const stream = new JobStream(
      Object.assign({}, opts, {
        url: rootElement.getAttribute("data-events-url"),
        lastEventId: lastEventId,
        heartbeatMs: heartbeat || opts.heartbeatMs,
        onEvent: (evt) => {
          if (opts.onEvent) opts.onEvent(evt);
          rootElement.dispatchEvent(new CustomEvent("copilot:event", { detail: evt }));
        },
        onState: (state, info) => {
          render(state, info);
          if (opts.onState) opts.onState(state, info);
        },
      }),
    );
    binding.stream = stream;
    stream.start();
    return stream;
  }

  if (button) {
    button.hidden = true;
    button.addEventListener("click", () => binding.stream && binding.stream.reconnectNow());
  }
  if (win && typeof win.addEventListener === "function") {
    // pagehide stopped the stream; a page restored from the back/forward cache resumes.
    win.addEventListener("pageshow", (event) => {
      if (event && event.persisted && binding.stream && binding.stream.state === "stopped") {
        startStream(binding.stream.lastEventId);
      }
    });
  }
  startStream(rootElement.getAttribute("data-last-event-id") || "0");
  return binding;
}
