import test from "node:test";
import assert from "node:assert/strict";

import { SSEParser } from "../../static/copilot/sse_parser.js";
import {
  CopilotStream,
  JobStream,
  STATES,
  retryAfterMs,
  withLastEventId,
} from "../../static/copilot/stream.js";
import { CountingTarget, FakeClock, FakeJobServer, FakeNet, flush, frame } from "./fakes.js";

const HEARTBEAT = 15000;
const URL = "/jobs/2f1c/events";

/** A JobStream wired to fakes; `random` fixed at 0.5 means no jitter. */
function setup(options = {}) {
  const clock = new FakeClock();
  const net = new FakeNet();
  const target = new CountingTarget();
  const events = [];
  const states = [];
  const stream = new JobStream({
    url: URL,
    heartbeatMs: HEARTBEAT,
    fetch: net.fetch,
    timers: clock,
    now: clock.now,
    random: () => 0.5,
    eventTarget: target,
    onEvent: (evt) => events.push(evt),
    onState: (state, info) => states.push({ state, ...info }),
    ...options,
  });
  const names = () => states.map((s) => s.state);
  const lastState = () => states[states.length - 1];
  return { clock, net, target, events, states, stream, names, lastState };
}

/** Start and answer the first request with an open SSE body. */
async function startOpen(ctx) {
  ctx.stream.start();
  await flush();
  ctx.net.last.respond(200);
  await flush();
  return ctx.net.last;
}

/** Let the pending retry timer fire and return the new request. */
async function fireRetry(ctx) {
  const before = ctx.net.requests.length;
  const delay = ctx.lastState().delayMs;
  await ctx.clock.advance(delay);
  assert.equal(ctx.net.requests.length, before + 1, "a retry request after the delay");
  return ctx.net.last;
}

test("first connection: no Last-Event-ID, events delivered with parsed data, state open", async () => {
  const ctx = setup();
  const req = await startOpen(ctx);
  assert.equal(req.url, URL);
  assert.equal(req.header("Last-Event-ID"), null);
  assert.equal(req.header("Accept"), "text/event-stream");
  assert.equal(req.init.credentials, "same-origin");
  req.push(frame({ event: "snapshot", data: { status: "queued" } }));
  req.push(frame({ id: 1, event: "status", data: { status: "running" } }));
  req.push(frame({ id: 2, event: "progress", data: "not json" }));
  await flush();
  assert.deepEqual(ctx.names(), ["connecting", "open"]);
  assert.deepEqual(ctx.events, [
    { id: null, type: "snapshot", data: { status: "queued" } },
    { id: 1, type: "status", data: { status: "running" } },
    { id: 2, type: "progress", data: "not json" },
  ]);
  assert.equal(ctx.stream.lastEventId, 2);
  ctx.stream.stop();
});

test("starts from the page's lastEventId and resumes after a drop with Last-Event-ID", async () => {
  const ctx = setup({ lastEventId: 4 });
  const req = await startOpen(ctx);
  assert.equal(req.header("Last-Event-ID"), "4");
  assert.equal(req.url, `${URL}?last_event_id=4`);
  req.push(frame({ id: 5, event: "progress", data: { percent: 10 } }));
  await flush();
  req.error();
  await flush();
  assert.deepEqual(ctx.lastState(), {
    state: "reconnecting",
    attempt: 1,
    of: 3,
    delayMs: 1000,
    reason: "network",
  });
  const retry = await fireRetry(ctx);
  assert.equal(retry.header("Last-Event-ID"), "5");
  assert.equal(retry.url, `${URL}?last_event_id=5`);
  ctx.stream.stop();
});

test("withLastEventId keeps other query parameters and replaces an old value", () => {
  assert.equal(withLastEventId("/e?a=1&last_event_id=3#x", 9), "/e?a=1&last_event_id=9#x");
  assert.equal(withLastEventId("/e?last_event_id=3", 0), "/e");
});

test("stream.js exports CopilotStream: the stream, its parser and helpers by their old names", () => {
  assert.equal(CopilotStream.JobStream, JobStream);
  assert.equal(CopilotStream.SSEParser, SSEParser);
  assert.equal(CopilotStream.withLastEventId, withLastEventId);
  assert.deepEqual(CopilotStream.STATES, [
    "connecting",
    "open",
    "reconnecting",
    "lost",
    "done",
    "gone",
    "unauthorized",
    "stopped",
  ]);
  assert.equal(STATES, CopilotStream.STATES);
});

test("backoff is 1 s, 2 s, 4 s, and no request is made before the delay", async () => {
  const ctx = setup();
  ctx.stream.start();
  await flush();
  const expected = [1000, 2000, 4000];
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    ctx.net.last.fail();
    await flush();
    const st = ctx.lastState();
    assert.equal(st.state, "reconnecting");
    assert.equal(st.attempt, attempt);
    assert.equal(st.of, 3);
    assert.equal(st.delayMs, expected[attempt - 1]);
    const before = ctx.net.requests.length;
    await ctx.clock.advance(st.delayMs - 1);
    assert.equal(ctx.net.requests.length, before, "not before the delay");
    await ctx.clock.advance(1);
    assert.equal(ctx.net.requests.length, before + 1, "right at the delay");
  }
  ctx.stream.stop();
});

test("jitter stays within 20 % of the base delay", async () => {
  for (const [random, factor] of [
    [0, 0.8],
    [0.999999, 1.2],
    [0.25, 0.9],
  ]) {
    const ctx = setup({ random: () => random });
    ctx.stream.start();
    await flush();
    const delays = [];
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      ctx.net.last.fail();
      await flush();
      delays.push(ctx.lastState().delayMs);
      await ctx.clock.advance(ctx.lastState().delayMs);
    }
    assert.deepEqual(
      delays,
      [1000, 2000, 4000].map((d) => Math.round(d * factor)),
      `random=${random}`,
    );
    ctx.stream.stop();
  }
});

test("a server that fails at once is given up after 3 attempts: lost", async () => {
  const ctx = setup();
  ctx.net.onRequest = (req) => Promise.resolve().then(() => req.respond(502, { body: false }));
  ctx.stream.start();
  await ctx.clock.advance(60000);
  assert.equal(ctx.net.requests.length, 4, "the first connection and 3 retries");
  assert.deepEqual(ctx.names(), [
    "connecting",
    "reconnecting",
    "connecting",
    "reconnecting",
    "connecting",
    "reconnecting",
    "connecting",
    "lost",
  ]);
  assert.deepEqual(
    ctx.states.filter((s) => s.state === "reconnecting").map((s) => s.attempt),
    [1, 2, 3],
  );
  assert.equal(ctx.clock.pending, 0, "lost leaves no timer running");
  assert.equal(ctx.target.count("online"), 1, "but still listens for online");
  ctx.stream.stop();
});

test("a server that accepts and dies with nothing new does not reset the counter", async () => {
  const ctx = setup({ lastEventId: 3 });
  // Every connection: 200, replays old events (ids <= 3) and a snapshot, then ends at once.
  ctx.net.onRequest = (req) =>
    Promise.resolve().then(() => {
      req.respond(200);
      req.push(frame({ event: "snapshot", data: { status: "running" } }));
      req.push(frame({ id: 2, event: "status", data: {} }));
      req.push(frame({ id: 3, event: "progress", data: {} }));
      req.end();
    });
  ctx.stream.start();
  await ctx.clock.advance(60000);
  assert.equal(ctx.lastState().state, "lost");
  assert.equal(ctx.net.requests.length, 4);
  assert.deepEqual(
    ctx.events.map((e) => e.type),
    ["snapshot", "snapshot", "snapshot", "snapshot"],
    "replayed ids <= 3 are never delivered",
  );
});

test("a server that accepts and then sends nothing is given up: silence is not health", async () => {
  const ctx = setup();
  ctx.net.onRequest = (req) => Promise.resolve().then(() => req.respond(200));
  ctx.stream.start();
  await ctx.clock.advance(10 * 60000);
  assert.equal(ctx.lastState().state, "lost");
  assert.equal(ctx.net.requests.length, 4);
  assert.ok(ctx.net.requests.every((req) => req.aborted), "each one ended by the watchdog");
  assert.deepEqual(
    ctx.states.filter((s) => s.state === "reconnecting").map((s) => s.reason),
    ["watchdog", "watchdog", "watchdog"],
  );
});

test("a connection that stays open less than a heartbeat and dies costs an attempt", async () => {
  const ctx = setup();
  ctx.stream.start();
  await flush();
  ctx.net.last.fail();
  await flush();
  let req = await fireRetry(ctx); // attempt 1
  req.respond(200);
  req.push(": ping\n\n");
  await ctx.clock.advance(HEARTBEAT - 1);
  req.error();
  await flush();
  assert.equal(ctx.lastState().state, "reconnecting");
  assert.equal(ctx.lastState().attempt, 2);
  req = await fireRetry(ctx);
  ctx.stream.stop();
});

test("the counter resets after an event newer than what the client had", async () => {
  const ctx = setup({ lastEventId: 10 });
  ctx.stream.start();
  await flush();
  ctx.net.last.fail();
  await flush();
  let req = await fireRetry(ctx);
  req.fail();
  await flush();
  assert.equal(ctx.lastState().attempt, 2);
  req = await fireRetry(ctx);
  req.respond(200);
  req.push(frame({ id: 11, event: "progress", data: {} }));
  await flush();
  req.error(); // dies right after, long before a heartbeat
  await flush();
  assert.equal(ctx.lastState().state, "reconnecting");
  assert.equal(ctx.lastState().attempt, 1, "new data proved the connection healthy");
  assert.equal(ctx.lastState().delayMs, 1000);
  ctx.stream.stop();
});

test("the counter resets after one heartbeat interval open with bytes flowing", async () => {
  const ctx = setup();
  ctx.stream.start();
  await flush();
  ctx.net.last.fail();
  await flush();
  let req = await fireRetry(ctx);
  req.fail();
  await flush();
  req = await fireRetry(ctx); // attempt 2 is connecting
  req.respond(200);
  await flush();
  await ctx.clock.advance(HEARTBEAT);
  req.push(": ping\n\n"); // the first ping, just after the interval
  await flush();
  req.error();
  await flush();
  assert.equal(ctx.lastState().attempt, 1);
  ctx.stream.stop();
});

test("a planned reconnect event reconnects at once and costs no attempt", async () => {
  const ctx = setup();
  ctx.stream.start();
  await flush();
  ctx.net.last.fail();
  await flush();
  let req = await fireRetry(ctx);
  req.fail();
  await flush();
  req = await fireRetry(ctx);
  assert.equal(ctx.lastState().attempt, 2);
  // Ten planned rotations in a row, each sending nothing new: no attempt spent, none reset.
  for (let i = 0; i < 10; i += 1) {
    req.respond(200);
    req.push(frame({ event: "reconnect", data: null }));
    await flush();
    assert.ok(req.aborted || req.bodyCancelled, "the old connection is closed");
    assert.notEqual(ctx.net.last, req, "a new request at once, no timer");
    assert.equal(ctx.clock.pendingDelays().includes(1000), false);
    req = ctx.net.last;
    assert.equal(req.header("Last-Event-ID"), null);
  }
  assert.equal(ctx.names().includes("lost"), false);
  assert.equal(ctx.events.length, 0, "the reconnect event is not handed to the page");
  req.fail();
  await flush();
  assert.equal(ctx.lastState().attempt, 3, "the count went on where it was");
  req = await fireRetry(ctx);
  req.fail();
  await flush();
  assert.equal(ctx.lastState().state, "lost");
});

test("204 means done: no retry, nothing left running", async () => {
  const ctx = setup({ lastEventId: 7 });
  ctx.stream.start();
  await flush();
  ctx.net.last.respond(204, { body: false });
  await flush();
  assert.deepEqual(ctx.names(), ["connecting", "done"]);
  await ctx.clock.advance(120000);
  assert.equal(ctx.net.requests.length, 1);
  assert.equal(ctx.clock.pending, 0);
  assert.equal(ctx.target.total, 0);
});

for (const [status, state] of [
  [404, "gone"],
  [401, "unauthorized"],
  [403, "unauthorized"],
]) {
  test(`${status} means ${state}: no retry loop`, async () => {
    const ctx = setup();
    ctx.stream.start();
    await flush();
    ctx.net.last.respond(status, { contentType: "application/json" });
    await flush();
    assert.deepEqual(ctx.names(), ["connecting", state]);
    assert.equal(ctx.lastState().status, status);
    await ctx.clock.advance(120000);
    assert.equal(ctx.net.requests.length, 1);
    assert.equal(ctx.clock.pending, 0);
    assert.equal(ctx.target.total, 0, "online/pagehide listeners removed");
    ctx.target.dispatchEvent(new Event("online"));
    await flush();
    assert.equal(ctx.net.requests.length, 1, "online does not revive it");
    ctx.stream.reconnectNow();
    assert.equal(ctx.net.requests.length, 1, "nor does reconnectNow");
  });
}

test("a redirect to an HTML page (the login page) means unauthorized", async () => {
  const ctx = setup();
  ctx.stream.start();
  await flush();
  ctx.net.last.respond(200, { contentType: "text/html; charset=utf-8", redirected: true });
  await flush();
  assert.deepEqual(ctx.names(), ["connecting", "unauthorized"]);
  assert.equal(ctx.clock.pending, 0);
});

test("a non-2xx (502) and a 200 of the wrong type are drops that retry", async () => {
  const ctx = setup();
  ctx.stream.start();
  await flush();
  ctx.net.last.respond(502, { contentType: "text/html" });
  await flush();
  assert.equal(ctx.lastState().state, "reconnecting");
  assert.equal(ctx.lastState().reason, "http 502");
  const req = await fireRetry(ctx);
  req.respond(200, { contentType: "application/json" });
  await flush();
  assert.equal(ctx.lastState().state, "reconnecting");
  assert.equal(ctx.lastState().attempt, 2);
  ctx.stream.stop();
});

test("a 503's Retry-After stretches the wait, capped; a short one keeps the backoff", async () => {
  const ctx = setup();
  ctx.stream.start();
  await flush();
  ctx.net.last.respond(503, { contentType: "text/plain", headers: { "Retry-After": "5" } });
  await flush();
  assert.equal(ctx.lastState().state, "reconnecting");
  assert.equal(ctx.lastState().delayMs, 5000); // not the 1 s backoff: what the server asked
  await ctx.clock.advance(4999);
  assert.equal(ctx.net.requests.length, 1, "no retry before the server's Retry-After");
  await ctx.clock.advance(1);
  assert.equal(ctx.net.requests.length, 2);
  ctx.net.last.respond(503, { contentType: "text/plain", headers: { "Retry-After": "3600" } });
  await flush();
  assert.equal(ctx.lastState().delayMs, 30000); // at most maxRetryAfterMs
  const third = await fireRetry(ctx);
  third.respond(502, { contentType: "text/html", headers: { "Retry-After": "1" } });
  await flush();
  assert.equal(ctx.lastState().delayMs, 4000); // the backoff, longer than what was asked
  assert.equal(ctx.lastState().attempt, 3);
  ctx.stream.stop();
});

test("retryAfterMs reads seconds and HTTP dates, and ignores nonsense", () => {
  const answer = (value) => ({ headers: new Headers(value === null ? {} : { "Retry-After": value }) });
  const now = Date.parse("Mon, 30 Nov 2026 12:00:00 GMT");
  assert.equal(retryAfterMs(answer("5"), now), 5000);
  assert.equal(retryAfterMs(answer(" 0 "), now), 0);
  assert.equal(retryAfterMs(answer("Mon, 30 Nov 2026 12:00:07 GMT"), now), 7000);
  assert.equal(retryAfterMs(answer("Mon, 30 Nov 2026 11:00:00 GMT"), now), 0);
  assert.equal(retryAfterMs(answer("-3"), now), 0);
  assert.equal(retryAfterMs(answer("soon"), now), 0);
  assert.equal(retryAfterMs(answer(null), now), 0);
});

test("a stream that ends cleanly without a terminal or reconnect event is a drop", async () => {
  const ctx = setup();
  const req = await startOpen(ctx);
  req.push(frame({ id: 1, event: "status", data: {} }));
  req.end();
  await flush();
  assert.equal(ctx.lastState().state, "reconnecting");
  assert.equal(ctx.lastState().reason, "ended");
  ctx.stream.stop();
});

test("events with an id <= the last one are never delivered again", async () => {
  const ctx = setup({ lastEventId: 2 });
  let req = await startOpen(ctx);
  req.push(frame({ id: 1, event: "status", data: {} })); // older than the page's 2
  req.push(frame({ id: 3, event: "progress", data: { n: 3 } }));
  req.push(frame({ id: 3, event: "progress", data: { n: "dup" } })); // same connection dup
  req.push(frame({ id: 4, event: "progress", data: { n: 4 } }));
  await flush();
  req.error();
  await flush();
  req = await fireRetry(ctx);
  assert.equal(req.header("Last-Event-ID"), "4");
  req.respond(200);
  // A server that ignores Last-Event-ID and replays from 3.
  for (const id of [3, 4, 5, 6]) req.push(frame({ id, event: "progress", data: { n: id } }));
  await flush();
  assert.deepEqual(
    ctx.events.map((e) => [e.id, e.data.n]),
    [
      [3, 3],
      [4, 4],
      [5, 5],
      [6, 6],
    ],
  );
  ctx.stream.stop();
});

test("watchdog: no byte for 2.5 heartbeats aborts the fetch and reconnects", async () => {
  const ctx = setup();
  const req = await startOpen(ctx);
  req.push(frame({ id: 1, event: "status", data: {} }));
  await flush();
  await ctx.clock.advance(2.5 * HEARTBEAT - 1);
  assert.equal(ctx.lastState().state, "open");
  assert.equal(req.aborted, false);
  await ctx.clock.advance(1);
  assert.equal(req.aborted, true, "the fetch was aborted");
  assert.equal(ctx.lastState().state, "reconnecting");
  assert.equal(ctx.lastState().reason, "watchdog");
  ctx.stream.stop();
});

test("watchdog: pings keep a quiet stream alive", async () => {
  const ctx = setup();
  const req = await startOpen(ctx);
  for (let i = 0; i < 20; i += 1) {
    await ctx.clock.advance(HEARTBEAT);
    req.push(": ping\n\n");
    await flush();
  }
  assert.deepEqual(ctx.names(), ["connecting", "open"]);
  assert.equal(req.aborted, false);
  ctx.stream.stop();
});

test("watchdog also covers a server that never answers the request", async () => {
  const ctx = setup();
  ctx.stream.start();
  await flush();
  const req = ctx.net.last;
  await ctx.clock.advance(2.5 * HEARTBEAT);
  assert.equal(req.aborted, true);
  assert.equal(ctx.lastState().state, "reconnecting");
  ctx.stream.stop();
});

test("lost: the browser's online event reconnects with a fresh counter", async () => {
  const ctx = setup();
  ctx.net.onRequest = (req) => Promise.resolve().then(() => req.fail());
  ctx.stream.start();
  await ctx.clock.advance(60000);
  assert.equal(ctx.lastState().state, "lost");
  assert.equal(ctx.net.requests.length, 4);
  ctx.net.onRequest = null;
  ctx.target.dispatchEvent(new Event("online"));
  await flush();
  assert.equal(ctx.net.requests.length, 5);
  assert.deepEqual(ctx.lastState(), { state: "connecting", attempt: 0, of: 3, planned: false });
  ctx.net.last.fail();
  await flush();
  assert.equal(ctx.lastState().attempt, 1, "three fresh attempts");
  ctx.stream.stop();
});

test("online while waiting to reconnect skips the wait but keeps the count", async () => {
  const ctx = setup();
  ctx.stream.start();
  await flush();
  ctx.net.last.fail();
  await flush();
  let req = await fireRetry(ctx);
  req.fail();
  await flush();
  assert.equal(ctx.lastState().delayMs, 2000);
  ctx.target.dispatchEvent(new Event("online"));
  await flush();
  assert.equal(ctx.net.requests.length, 3, "connected at once");
  assert.equal(ctx.clock.pendingDelays().includes(2000), false, "the retry timer is gone");
  req = ctx.net.last;
  req.fail();
  await flush();
  assert.equal(ctx.lastState().attempt, 3);
  ctx.stream.stop();
});

test("lost: reconnectNow() resets the counter and connects", async () => {
  const ctx = setup({ lastEventId: 5 });
  ctx.net.onRequest = (req) => Promise.resolve().then(() => req.fail());
  ctx.stream.start();
  await ctx.clock.advance(60000);
  assert.equal(ctx.lastState().state, "lost");
  ctx.net.onRequest = null;
  ctx.stream.reconnectNow();
  await flush();
  const req = ctx.net.last;
  assert.equal(req.header("Last-Event-ID"), "5");
  req.respond(200);
  await flush();
  assert.equal(ctx.lastState().state, "open");
  ctx.stream.stop();
});

test("terminal event: done, fetch aborted, no timers, listeners removed", async () => {
  const ctx = setup();
  const req = await startOpen(ctx);
  assert.equal(ctx.target.count("online"), 1);
  assert.equal(ctx.target.count("pagehide"), 1);
  req.push(frame({ event: "snapshot", data: { status: "running", terminal: true } }));
  req.push(frame({ id: 1, event: "result", data: { terminal: true, result: {} } }));
  req.push(frame({ id: 2, event: "progress", data: {} })); // after the end: ignored
  await flush();
  assert.deepEqual(
    ctx.events.map((e) => e.type),
    ["snapshot", "result"],
    "a snapshot never ends the stream, the terminal event does",
  );
  assert.deepEqual(ctx.names(), ["connecting", "open", "done"]);
  assert.ok(req.aborted);
  assert.equal(ctx.clock.pending, 0);
  assert.equal(ctx.target.total, 0);
  await ctx.clock.advance(120000);
  assert.equal(ctx.net.requests.length, 1);
});

test("stop(): fetch aborted, no pending timers, listeners removed, from every state", async () => {
  // open
  let ctx = setup();
  let req = await startOpen(ctx);
  ctx.stream.stop();
  await flush();
  assert.ok(req.aborted);
  assert.equal(ctx.clock.pending, 0);
  assert.equal(ctx.target.total, 0);
  assert.equal(ctx.lastState().state, "stopped");
  // waiting to reconnect
  ctx = setup();
  ctx.stream.start();
  await flush();
  ctx.net.last.fail();
  await flush();
  assert.equal(ctx.clock.pending, 1, "the retry timer");
  ctx.stream.stop();
  assert.equal(ctx.clock.pending, 0);
  await ctx.clock.advance(60000);
  assert.equal(ctx.net.requests.length, 1);
  // request in flight
  ctx = setup();
  ctx.stream.start();
  await flush();
  req = ctx.net.last;
  ctx.stream.stop();
  await flush();
  assert.ok(req.aborted);
  assert.equal(ctx.clock.pending, 0);
  // twice is harmless, and reconnectNow after stop does nothing
  ctx.stream.stop();
  ctx.stream.reconnectNow();
  assert.equal(ctx.net.requests.length, 1);
  assert.deepEqual(ctx.names(), ["connecting", "stopped"]);
});

test("pagehide stops the stream", async () => {
  const ctx = setup();
  const req = await startOpen(ctx);
  ctx.target.dispatchEvent(new Event("pagehide"));
  await flush();
  assert.equal(ctx.lastState().state, "stopped");
  assert.ok(req.aborted);
  assert.equal(ctx.clock.pending, 0);
  assert.equal(ctx.target.total, 0);
});

test("a page callback that throws does not break the stream", async () => {
  const errors = [];
  const original = globalThis.reportError;
  globalThis.reportError = (err) => errors.push(err);
  try {
    const seen = [];
    const ctx = setup({
      onEvent: (evt) => {
        seen.push(evt.id);
        throw new Error("page bug");
      },
    });
    const req = await startOpen(ctx);
    req.push(frame({ id: 1, event: "status", data: {} }) + frame({ id: 2, event: "status", data: {} }));
    await flush();
    assert.deepEqual(seen, [1, 2]);
    assert.equal(errors.length, 2);
    assert.equal(ctx.lastState().state, "open");
    ctx.stream.stop();
  } finally {
    globalThis.reportError = original;
  }
});

test("a 30-minute job whose connection is cut every 5 minutes runs to the end", async () => {
  const ctx = setup();
  const server = new FakeJobServer({ clock: ctx.clock, net: ctx.net, cutAfterMs: 5 * 60000 });
  // The job: a progress event every 20 s for 30 minutes, then the terminal result.
  let n = 0;
  const tick = () => {
    n += 1;
    if (n * 20000 >= 30 * 60000) {
      server.emit("result", { terminal: true, agent_json: { id: "a" } });
    } else {
      server.emit("progress", { percent: Math.floor((n * 20000 * 100) / (30 * 60000)) });
      ctx.clock.setTimeout(tick, 20000);
    }
  };
  ctx.clock.setTimeout(tick, 20000);
  ctx.stream.start();
  await ctx.clock.advance(35 * 60000);

  assert.equal(ctx.lastState().state, "done");
  assert.equal(ctx.names().includes("lost"), false);
  const ids = ctx.events.filter((e) => e.id !== null).map((e) => e.id);
  assert.deepEqual(
    ids,
    server.events.map((e) => e.id),
    "every event exactly once, in order",
  );
  assert.equal(ids.length, 90);
  assert.equal(ctx.events[ctx.events.length - 1].type, "result");
  const attempts = ctx.states.filter((s) => s.state === "reconnecting").map((s) => s.attempt);
  // Connections open at 0 s, 301 s, 602 s, 903 s, 1204 s and 1505 s (each cut 300 s after it
  // opened, then 1 s of backoff); the last one sees the end at 1800 s.
  assert.equal(attempts.length, 5, "one reconnect per cut");
  assert.deepEqual(new Set(attempts), new Set([1]), "each cut is a first attempt again");
  assert.equal(ctx.net.requests.length, 6);
  assert.equal(ctx.clock.pending, 0, "nothing left running");
  assert.equal(ctx.target.total, 0);
});

test("a 30-minute job with the server's planned rotation every 4 minutes never backs off", async () => {
  const ctx = setup();
  const server = new FakeJobServer({ clock: ctx.clock, net: ctx.net, rotateAfterMs: 240000 });
  let n = 0;
  const tick = () => {
    n += 1;
    if (n === 60) {
      server.emit("result", { terminal: true });
    } else {
      server.emit("progress", { n });
      ctx.clock.setTimeout(tick, 30000);
    }
  };
  ctx.clock.setTimeout(tick, 30000);
  ctx.stream.start();
  await ctx.clock.advance(31 * 60000);
  assert.equal(ctx.lastState().state, "done");
  assert.equal(ctx.names().includes("reconnecting"), false);
  assert.deepEqual(
    ctx.events.filter((e) => e.id !== null).map((e) => e.id),
    server.events.map((e) => e.id),
  );
  assert.equal(ctx.net.requests.length, 8);
  assert.equal(ctx.clock.pending, 0);
});

test("a finished job the client already has answers 204 on resume: done", async () => {
  const ctx = setup();
  const server = new FakeJobServer({ clock: ctx.clock, net: ctx.net });
  server.emit("status", { status: "running" });
  const req = await (async () => {
    ctx.stream.start();
    await flush();
    return ctx.net.last;
  })();
  assert.equal(ctx.events.length, 2, "snapshot and the status event");
  req.error(); // cut before the job ends
  await flush();
  server.emit("result", { terminal: true });
  await ctx.clock.advance(1000);
  assert.equal(ctx.lastState().state, "done", "the replayed terminal event ends it");
  // A later visit of the same page with the last id already shown gets 204.
  const again = setup({ lastEventId: 2, fetch: ctx.net.fetch });
  again.stream.start();
  await flush();
  assert.equal(ctx.net.last.header("Last-Event-ID"), "2");
  assert.deepEqual(again.names(), ["connecting", "done"]);
});
