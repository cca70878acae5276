/*
 * Test doubles for static/copilot/stream.js and stream_page.js: a hand-driven clock, a fetch
 * whose response bodies are real ReadableStreams the test pushes bytes into, a small job server
 * built on both, and a tiny DOM element. Not a test file itself (node --test only runs
 * *.test.js).
 */

const encoder = new TextEncoder();

/** Let promise chains (fetch, stream reads) run to rest. */
async function flush() {
  for (let i = 0; i < 8; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

/** Timers in a queue that only moves when the test advances it. */
class FakeClock {
  constructor() {
    this.time = 0;
    this._timers = new Map();
    this._seq = 0;
    this.setTimeout = (fn, ms) => {
      this._seq += 1;
      const delay = Math.max(0, Number(ms) || 0);
      this._timers.set(this._seq, { at: this.time + delay, fn, seq: this._seq, delay });
      return this._seq;
    };
    this.clearTimeout = (handle) => {
      this._timers.delete(handle);
    };
    this.now = () => this.time;
  }

  get pending() {
    return this._timers.size;
  }

  /** The delays (as scheduled) of the pending timers, soonest first. */
  pendingDelays() {
    return [...this._timers.values()].sort((a, b) => a.at - b.at).map((t) => t.delay);
  }

  /** Move time forward by ms, firing due timers in order and flushing promises after each. */
  async advance(ms) {
    const target = this.time + ms;
    await flush(); // what is already due (answers, reads) happens before time moves
    for (let fired = 0; ; fired += 1) {
      if (fired > 100000) throw new Error("FakeClock: timers keep firing, is something looping?");
      let next = null;
      for (const timer of this._timers.values()) {
        if (timer.at > target) continue;
        if (next === null || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq)) {
          next = timer;
        }
      }
      if (next === null) break;
      this._timers.delete(next.seq);
      this.time = next.at;
      next.fn();
      await flush();
    }
    this.time = target;
    await flush();
  }
}

/** One request made through FakeNet.fetch; the test answers it. */
class FakeRequest {
  constructor(url, init) {
    this.url = url;
    this.init = init;
    this.headers = init.headers || {};
    this.signal = init.signal;
    this.aborted = false;
    this.bodyCancelled = false;
    this.settled = false;
    this._controller = null;
    this._closed = false;
    this.promise = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    if (this.signal) {
      this.signal.addEventListener("abort", () => {
        this.aborted = true;
        const error = new DOMException("The operation was aborted.", "AbortError");
        if (!this.settled) {
          this.settled = true;
          this._reject(error);
        }
        if (this._controller && !this._closed) {
          this._closed = true;
          this._controller.error(error);
        }
      });
    }
  }

  header(name) {
    const wanted = name.toLowerCase();
    for (const [key, value] of Object.entries(this.headers)) {
      if (key.toLowerCase() === wanted) return value;
    }
    return null;
  }

  /** Answer with a status; for 2xx SSE answers the body stays open for push/end/error. */
  respond(
    status = 200,
    { contentType = "text/event-stream", redirected = false, body = true, headers: extra = {} } = {},
  ) {
    if (this.settled) throw new Error("request already settled");
    this.settled = true;
    let stream = null;
    if (body) {
      stream = new ReadableStream({
        start: (controller) => {
          this._controller = controller;
        },
        cancel: () => {
          this.bodyCancelled = true;
          this._closed = true;
        },
      });
    }
    const headers = new Headers({ ...extra, ...(contentType ? { "content-type": contentType } : {}) });
    this._resolve({ status, ok: status >= 200 && status < 300, headers, body: stream, redirected });
    return this;
  }

  /** Fail the fetch itself (like a refused connection). */
  fail() {
    if (this.settled) throw new Error("request already settled");
    this.settled = true;
    this._reject(new TypeError("Failed to fetch"));
  }

  get open() {
    return this._controller !== null && !this._closed;
  }

  push(text) {
    if (!this.open) return false;
    this._controller.enqueue(encoder.encode(text));
    return true;
  }

  pushBytes(bytes) {
    if (!this.open) return false;
    this._controller.enqueue(bytes);
    return true;
  }

  /** Close the body cleanly. */
  end() {
    if (!this.open) return;
    this._closed = true;
    this._controller.close();
  }

  /** Break the body mid-stream (like a cut connection). */
  error() {
    if (!this.open) return;
    this._closed = true;
    this._controller.error(new TypeError("network error"));
  }
}

/** fetch() double: records every request; `onRequest` may answer it at once. */
class FakeNet {
  constructor() {
    this.requests = [];
    this.onRequest = null;
    this.fetch = (url, init) => {
      const request = new FakeRequest(url, init || {});
      this.requests.push(request);
      if (this.onRequest) this.onRequest(request);
      return request.promise;
    };
  }

  get last() {
    return this.requests[this.requests.length - 1];
  }
}

/** An EventTarget (the window stand-in) that counts its listeners. */
class CountingTarget extends EventTarget {
  constructor() {
    super();
    this.listeners = new Map();
  }

  addEventListener(type, listener, options) {
    this.listeners.set(type, (this.listeners.get(type) || 0) + 1);
    super.addEventListener(type, listener, options);
  }

  removeEventListener(type, listener, options) {
    this.listeners.set(type, (this.listeners.get(type) || 0) - 1);
    super.removeEventListener(type, listener, options);
  }

  count(type) {
    return this.listeners.get(type) || 0;
  }

  get total() {
    let sum = 0;
    for (const n of this.listeners.values()) sum += n;
    return sum;
  }
}

/** One SSE frame. */
function frame({ id, event, data }) {
  let out = "";
  if (id !== undefined && id !== null) out += `id: ${id}\n`;
  if (event) out += `event: ${event}\n`;
  out += `data: ${typeof data === "string" ? data : JSON.stringify(data === undefined ? null : data)}\n\n`;
  return out;
}

/**
 * A job's event server on the fake clock, following the portal's events endpoint: replays
 * `seq > Last-Event-ID` then live events, pings every heartbeat, 204 for a finished job whose
 * last event the client has. `cutAfterMs` breaks each connection that long after it opened
 * (a load balancer's limit); `rotateAfterMs` sends `event: reconnect` and closes cleanly.
 */
class FakeJobServer {
  constructor({ clock, net, heartbeatMs = 15000, cutAfterMs = null, rotateAfterMs = null }) {
    this.clock = clock;
    this.heartbeatMs = heartbeatMs;
    this.cutAfterMs = cutAfterMs;
    this.rotateAfterMs = rotateAfterMs;
    this.events = []; // {id, event, data}
    this.connections = [];
    this.finished = false;
    net.onRequest = (request) => this._accept(request);
  }

  emit(event, data) {
    const evt = { id: this.events.length + 1, event, data };
    this.events.push(evt);
    if (data && data.terminal === true) this.finished = true;
    for (const conn of this.connections) {
      if (conn.open) conn.request.push(frame(evt));
    }
    if (this.finished) {
      for (const conn of this.connections) this._close(conn, "end");
    }
  }

  _accept(request) {
    const lastId = Number(request.header("Last-Event-ID") || 0);
    const conn = { request, open: true, timers: [] };
    this.connections.push(conn);
    Promise.resolve().then(() => {
      if (request.settled) return;
      if (this.finished && lastId >= this.events.length) {
        request.respond(204, { body: false });
        conn.open = false;
        return;
      }
      request.respond(200);
      if (lastId === 0) request.push(frame({ event: "snapshot", data: { status: "running" } }));
      for (const evt of this.events) if (evt.id > lastId) request.push(frame(evt));
      if (this.finished) {
        this._close(conn, "end");
        return;
      }
      const ping = () => {
        if (!conn.open) return;
        request.push(": ping\n\n");
        conn.timers.push(this.clock.setTimeout(ping, this.heartbeatMs));
      };
      conn.timers.push(this.clock.setTimeout(ping, this.heartbeatMs));
      if (this.cutAfterMs !== null) {
        conn.timers.push(this.clock.setTimeout(() => this._close(conn, "error"), this.cutAfterMs));
      }
      if (this.rotateAfterMs !== null) {
        conn.timers.push(
          this.clock.setTimeout(() => {
            if (!conn.open) return;
            request.push(frame({ event: "reconnect", data: null }));
            this._close(conn, "end");
          }, this.rotateAfterMs),
        );
      }
    });
  }

  _close(conn, how) {
    if (!conn.open) return;
    conn.open = false;
    for (const handle of conn.timers) this.clock.clearTimeout(handle);
    if (how === "error") conn.request.error();
    else conn.request.end();
  }
}

/** A DOM element stand-in: attributes, children, textContent, querySelector for [attr]. */
class FakeElement extends EventTarget {
  constructor(tagName, attributes = {}, ownerDocument = null) {
    super();
    this.tagName = tagName.toUpperCase();
    this.attributes = new Map(Object.entries(attributes));
    this.children = [];
    this.hidden = false;
    this.href = undefined;
    this._text = "";
    this.ownerDocument = ownerDocument;
  }

  getAttribute(name) {
    return this.attributes.has(name) ? this.attributes.get(name) : null;
  }

  setAttribute(name, value) {
    this.attributes.set(name, String(value));
  }

  hasAttribute(name) {
    return this.attributes.has(name);
  }

  appendChild(child) {
    this.children.push(child);
    return child;
  }

  get textContent() {
    return this._text + this.children.map((c) => c.textContent).join("");
  }

  set textContent(value) {
    this.children = [];
    this._text = String(value);
  }

  get innerHTML() {
    throw new Error("innerHTML must not be used");
  }

  set innerHTML(value) {
    throw new Error("innerHTML must not be used");
  }

  querySelector(selector) {
    const match = /^([a-z]*)\[([a-z-]+)\]$/.exec(selector);
    if (!match) throw new Error(`unsupported selector ${selector}`);
    const [, tag, attr] = match;
    const stack = [...this.children];
    while (stack.length) {
      const el = stack.shift();
      if ((!tag || el.tagName === tag.toUpperCase()) && el.hasAttribute(attr)) return el;
      stack.push(...el.children);
    }
    return null;
  }
}

class FakeDocument {
  createElement(tagName) {
    return new FakeElement(tagName, {}, this);
  }
}

export {
  CountingTarget,
  FakeClock,
  FakeDocument,
  FakeElement,
  FakeJobServer,
  FakeNet,
  flush,
  frame,
};
