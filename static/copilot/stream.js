/*
 * CopilotStream: follows a generation job's event stream (GET /jobs/<uuid>/events) in the browser.
 *
 * A plain ES module, no build and no dependencies, and nothing runs when it is imported. The
 * browser client is three modules, each imported by relative path:
 *   sse_parser.js   SSEParser, the `text/event-stream` parser
 *   stream.js       this file: JobStream, the reconnecting stream (also re-exports SSEParser)
 *   stream_page.js  attach(), which binds a JobStream to the job page's [data-copilot-stream]
 * Node imports them for tests/js/*.test.js.
 *
 * Why fetch and not EventSource: EventSource gives up for good on a 502 and cannot be told how
 * often to retry, and it cannot tell a 404 from a 401. Here `fetch` streams the body and a small
 * parser (SSEParser, WHATWG rules) turns it into events.
 *
 * Behaviour of a JobStream, in short:
 * - Resumes with the last event id it has (`Last-Event-ID` header and `?last_event_id=`) and never
 *   delivers an event whose id is <= that id (a safety net against replays).
 * - A drop (network error, 5xx, a stream that ends without a terminal or `reconnect` event, or no
 *   byte for 2.5 heartbeats) is retried after 1 s, 2 s, 4 s (+/- 20 % jitter), or after the
 *   answer's Retry-After when that is longer (at most 30 s; the portal's 503 during a database
 *   restart says 5 s); after 3 failed
 *   attempts the state is `lost`. The attempt counter resets only once a connection has proved
 *   healthy: it delivered an event newer than what the client had when it connected, or it stayed
 *   open for one heartbeat interval and received bytes.
 * - `event: reconnect` (the server's planned rotation) reconnects at once and costs no attempt.
 * - Terminal event (`data.terminal === true`) or 204: `done`. 404: `gone`. 401/403 (or a redirect
 *   to an HTML page, i.e. the login page): `unauthorized`. None of these retry.
 *
 * Everything that touches the outside world is injectable: fetch, timers, random, now, and the
 * event target that fires `online`/`pagehide` (the window).
 *
 * Use: `new JobStream({url, lastEventId, onEvent, onState}).start()`; on the job page,
 * stream_page.js does this from the page's data attributes.
 */
import { SSEParser } from "./sse_parser.js";

export { SSEParser };

export const STATES = Object.freeze([
  "connecting",
  "open",
  "reconnecting",
  "lost",
  "done",
  "gone",
  "unauthorized",
  "stopped",
]);
/** States after which the stream never connects again. */
const FINAL_STATES = new Set(["done", "gone", "unauthorized", "stopped"]);

// -----------------------------------------------------------------------------------------------
// Helpers
// -----------------------------------------------------------------------------------------------

/**
 * How long a non-2xx answer asks the client to wait, in ms (0 when it does not say): its
 * Retry-After header, in seconds or as an HTTP date.
 */
export function retryAfterMs(response, nowMs) {
  const value = response && response.headers && response.headers.get("retry-after");
  if (typeof value !== "string" || value.trim() === "") return 0;
  const text = value.trim();
  if (/^[0-9]{1,6}$/.test(text)) return parseInt(text, 10) * 1000;
  const at = Date.parse(text);
  return Number.isFinite(at) ? Math.max(0, at - nowMs) : 0;
}

/** A non-negative integer from an SSE id or a data attribute, else null. */
export function parseSeq(value) {
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && value >= 0 ? value : null;
  }
  if (typeof value !== "string" || !/^[0-9]{1,15}$/.test(value.trim())) return null;
  return parseInt(value.trim(), 10);
}

/** `url` with `last_event_id=<id>` set in its query (any earlier value replaced). */
export function withLastEventId(url, id) {
  const hashAt = url.indexOf("#");
  const hash = hashAt === -1 ? "" : url.slice(hashAt);
  let base = hashAt === -1 ? url : url.slice(0, hashAt);
  const queryAt = base.indexOf("?");
  let path = base;
  let params = [];
  if (queryAt !== -1) {
    path = base.slice(0, queryAt);
    params = base
      .slice(queryAt + 1)
      .split("&")
      .filter((p) => p !== "" && p.split("=")[0] !== "last_event_id");
  }
  if (id > 0) params.push("last_event_id=" + id);
  return path + (params.length ? "?" + params.join("&") : "") + hash;
}

function parseData(text) {
  try {
    return JSON.parse(text);
  } catch (err) {
    return text;
  }
}

function isTerminal(type, data) {
  // The snapshot describes the job; only a durable event ends the stream.
  return type !== "snapshot" && data !== null && typeof data === "object" && data.terminal === true;
}

function defaultTimers() {
  return {
    setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
    clearTimeout: (handle) => globalThis.clearTimeout(handle),
  };
}

// -----------------------------------------------------------------------------------------------
// JobStream
// -----------------------------------------------------------------------------------------------

/**
 * Follows one job's event stream until its terminal event, reconnecting as described at the
 * top of this file.
 *
 * Options:
 *   url            the events URL (required)
 *   lastEventId    the last event id the page already shows (default 0: none)
 *   heartbeatMs    the server's ping interval (default 15000); watchdog = 2.5 of these
 *   onEvent(evt)   each new event: {id, type, data}; id is the event's seq (a number), or
 *                  null for an event without one (snapshot) or with a non-numeric id; data is
 *                  the parsed JSON, or the text when it is not JSON. `reconnect` is not passed
 *                  on. The server's `retry:` field is ignored: the backoff is fixed above.
 *   onState(state, info)  state changes, see STATES; for "reconnecting"
 *                  info = {attempt, of, delayMs, reason}; for "connecting" {attempt, of, planned}
 *   fetch, timers ({setTimeout, clearTimeout}), random, now, AbortController,
 *   TextDecoder   the outside world (defaults: the globals)
 *   eventTarget    where `online` and `pagehide` fire (default: window in a browser)
 *   maxAttempts (3), baseDelayMs (1000), jitter (0.2), watchdogFactor (2.5),
 *   maxRetryAfterMs (30000): the longest a server's Retry-After may stretch one wait
 */
export class JobStream {
  constructor(options) {
    const o = options || {};
    if (!o.url || typeof o.url !== "string") throw new TypeError("JobStream: url is required");
    this.url = o.url;
    this.lastEventId = parseSeq(o.lastEventId) || 0;
    this.heartbeatMs = o.heartbeatMs > 0 ? Number(o.heartbeatMs) : 15000;
    this.maxAttempts = o.maxAttempts > 0 ? o.maxAttempts : 3;
    this.baseDelayMs = o.baseDelayMs >= 0 ? o.baseDelayMs : 1000;
    this.jitter = o.jitter >= 0 ? o.jitter : 0.2;
    this.maxRetryAfterMs = o.maxRetryAfterMs >= 0 ? o.maxRetryAfterMs : 30000;
    this.watchdogMs = this.heartbeatMs * (o.watchdogFactor > 0 ? o.watchdogFactor : 2.5);
    this._onEvent = o.onEvent || function () {};
    this._onState = o.onState || function () {};
    this._fetch = o.fetch || ((url, init) => globalThis.fetch(url, init));
    this._timers = o.timers || defaultTimers();
    this._random = o.random || Math.random;
    this._now = o.now || (() => Date.now());
    this._AbortController = o.AbortController || globalThis.AbortController;
    this._TextDecoder = o.TextDecoder || globalThis.TextDecoder;
    this._eventTarget =
      o.eventTarget !== undefined
        ? o.eventTarget
        : typeof window !== "undefined"
          ? window
          : null;

    this.state = null;
    this.attempt = 0; // consecutive failed attempts since the last healthy connection
    this._conn = null; // the current connection, see _connect()
    this._retryTimer = null;
    this._started = false;
    this._listening = false;
    this._onOnline = () => this._handleOnline();
    this._onPageHide = () => this.stop();
  }

  /** Connect (once). */
  start() {
    if (this._started) return this;
    this._started = true;
    if (this._eventTarget && typeof this._eventTarget.addEventListener === "function") {
      this._eventTarget.addEventListener("online", this._onOnline);
      this._eventTarget.addEventListener("pagehide", this._onPageHide);
      this._listening = true;
    }
    this._connect({ planned: false });
    return this;
  }

  /** Stop for good: abort the fetch, clear every timer, remove listeners. */
  stop() {
    if (!this._started || FINAL_STATES.has(this.state)) return;
    this._finish("stopped", {});
  }

  /** Reset the attempt counter and connect now (the "Reconnect" button). */
  reconnectNow() {
    if (!this._started || FINAL_STATES.has(this.state)) return;
    this.attempt = 0;
    this._connect({ planned: false });
  }

  // --- connection lifecycle -----------------------------------------------------------------

  _connect({ planned }) {
    this._teardownConnection();
    this._clearRetryTimer();
    const conn = {
      baseline: this.lastEventId, // what we had when this connection started
      controller: new this._AbortController(),
      reader: null,
      open: false,
      bytes: 0,
      heldOpenLongEnough: false,
      lastByteAt: this._now(),
      watchdog: null,
      healthTimer: null,
    };
    this._conn = conn;
    this._setState("connecting", {
      attempt: this.attempt,
      of: this.maxAttempts,
      planned: planned,
    });
    this._armWatchdog(conn, this.watchdogMs);
    this._run(conn).catch(reportError);
  }

  async _run(conn) {
    const headers = { Accept: "text/event-stream", "Cache-Control": "no-cache" };
    if (conn.baseline > 0) headers["Last-Event-ID"] = String(conn.baseline);
    let response;
    try {
      response = await this._fetch(withLastEventId(this.url, conn.baseline), {
        method: "GET",
        headers: headers,
        credentials: "same-origin",
        cache: "no-store",
        signal: conn.controller.signal,
      });
    } catch (err) {
      if (this._conn === conn) this._drop("network");
      return;
    }
    if (this._conn !== conn) {
      cancelBody(response);
      return;
    }
    const status = response.status;
    if (status === 204) return this._finishWith(response, "done", { status });
    if (status === 401 || status === 403) {
      return this._finishWith(response, "unauthorized", { status });
    }
    if (status === 404) return this._finishWith(response, "gone", { status });
    if (status < 200 || status > 299) {
      cancelBody(response);
      return this._drop("http " + status, retryAfterMs(response, this._now()));
    }
    const contentType = (response.headers && response.headers.get("content-type")) || "";
    if (!/^\s*text\/event-stream/i.test(contentType)) {
      cancelBody(response);
      // fetch follows redirects: an HTML answer after one is the login page.
      if (response.redirected) return this._finish("unauthorized", { status, redirected: true });
      return this._drop("content-type " + contentType);
    }
    if (!response.body || typeof response.body.getReader !== "function") {
      return this._drop("no body");
    }

    conn.reader = response.body.getReader();
    conn.open = true;
    conn.lastByteAt = this._now();
    conn.healthTimer = this._timers.setTimeout(() => {
      conn.healthTimer = null;
      conn.heldOpenLongEnough = true;
      this._checkHealthy(conn);
    }, this.heartbeatMs);
    this._setState("open", { attempt: this.attempt });

    const decoder = new this._TextDecoder("utf-8");
    const parser = new SSEParser({ onEvent: (message) => this._handleMessage(conn, message) });
    try {
      for (;;) {
        const { value, done } = await conn.reader.read();
        if (this._conn !== conn) return;
        if (done) break;
        if (!value || value.length === 0) continue;
        conn.bytes += value.length;
        conn.lastByteAt = this._now();
        this._checkHealthy(conn);
        parser.feed(decoder.decode(value, { stream: true }));
        if (this._conn !== conn) return;
      }
    } catch (err) {
      if (this._conn === conn) this._drop("network");
      return;
    }
    parser.feed(decoder.decode());
    parser.end();
    if (this._conn === conn) this._drop("ended");
  }

  _handleMessage(conn, message) {
    if (this._conn !== conn) return;
    if (message.type === "reconnect") {
      // Planned rotation: the server is about to close. Reconnect now, free of charge.
      this._connect({ planned: true });
      return;
    }
    const id = message.id === null ? null : parseSeq(message.id);
    if (id !== null) {
      if (id <= this.lastEventId) return; // already delivered: a replay
      this.lastEventId = id;
      if (id > conn.baseline) this._markHealthy(conn);
    }
    const data = parseData(message.data);
    const evt = { id: id, type: message.type, data: data };
    try {
      this._onEvent(evt);
    } catch (err) {
      reportError(err);
    }
    if (this._conn === conn && isTerminal(message.type, data)) {
      this._finish("done", { id: id });
    }
  }

  _checkHealthy(conn) {
    if (conn.heldOpenLongEnough && conn.bytes > 0) this._markHealthy(conn);
  }

  _markHealthy(conn) {
    if (this._conn === conn) this.attempt = 0;
  }

  /**
   * The current connection failed: back off and retry, or give up. `waitMs` is what the server
   * asked for (a 503's or 429's Retry-After, capped at maxRetryAfterMs): the retry waits at
   * least that long, so a database restart that the server answers with 503 + Retry-After: 5
   * is waited out instead of spending the three attempts in seven seconds.
   */
  _drop(reason, waitMs = 0) {
    this._teardownConnection();
    if (this.attempt >= this.maxAttempts) {
      this._setState("lost", { attempt: this.attempt, of: this.maxAttempts, reason: reason });
      return;
    }
    this.attempt += 1;
    const base = this.baseDelayMs * Math.pow(2, this.attempt - 1);
    const spread = this.jitter * (2 * this._random() - 1); // within [-jitter, +jitter)
    const asked = Math.min(Math.max(0, waitMs), this.maxRetryAfterMs);
    const delayMs = Math.max(0, Math.round(base * (1 + spread)), asked);
    this._retryTimer = this._timers.setTimeout(() => {
      this._retryTimer = null;
      this._connect({ planned: false });
    }, delayMs);
    this._setState("reconnecting", {
      attempt: this.attempt,
      of: this.maxAttempts,
      delayMs: delayMs,
      reason: reason,
    });
  }

  _handleOnline() {
    if (this.state === "lost") {
      this.reconnectNow();
    } else if (this.state === "reconnecting") {
      this._connect({ planned: false }); // skip the wait; the attempt was already counted
    }
  }

  _finishWith(response, state, info) {
    cancelBody(response);
    this._finish(state, info);
  }

  _finish(state, info) {
    this._teardownConnection();
    this._clearRetryTimer();
    if (this._listening) {
      this._eventTarget.removeEventListener("online", this._onOnline);
      this._eventTarget.removeEventListener("pagehide", this._onPageHide);
      this._listening = false;
    }
    this._setState(state, info);
  }

  _teardownConnection() {
    const conn = this._conn;
    if (!conn) return;
    this._conn = null;
    if (conn.watchdog !== null) this._timers.clearTimeout(conn.watchdog);
    if (conn.healthTimer !== null) this._timers.clearTimeout(conn.healthTimer);
    conn.watchdog = null;
    conn.healthTimer = null;
    try {
      conn.controller.abort();
    } catch (err) {
      // nothing to do
    }
    if (conn.reader) {
      conn.reader.cancel().catch(() => {});
    }
  }

  _clearRetryTimer() {
    if (this._retryTimer !== null) {
      this._timers.clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
  }

  /**
   * No byte for watchdogMs counts as a drop. One timer per window, not one per chunk: when it
   * fires early (bytes arrived meanwhile) it re-arms for the rest of the window.
   */
  _armWatchdog(conn, ms) {
    conn.watchdog = this._timers.setTimeout(() => {
      conn.watchdog = null;
      if (this._conn !== conn) return;
      const silentFor = this._now() - conn.lastByteAt;
      if (silentFor >= this.watchdogMs) {
        this._drop("watchdog");
      } else {
        this._armWatchdog(conn, this.watchdogMs - silentFor);
      }
    }, ms);
  }

  _setState(state, info) {
    this.state = state;
    try {
      this._onState(state, info || {});
    } catch (err) {
      reportError(err);
    }
  }
}

function cancelBody(response) {
  if (response && response.body && typeof response.body.cancel === "function") {
    try {
      response.body.cancel().catch(() => {});
    } catch (err) {
      // a locked or already closed body
    }
  }
}

function reportError(err) {
  // A bug in a page callback must not kill the stream; show it as an uncaught error.
  if (typeof globalThis.reportError === "function") {
    globalThis.reportError(err);
  } else if (typeof console !== "undefined") {
    console.error(err);
  }
}

/** The stream's API in one object, under its old name; attach and stateText: stream_page.js. */
export const CopilotStream = {
  JobStream: JobStream,
  SSEParser: SSEParser,
  withLastEventId: withLastEventId,
  STATES: STATES,
};
