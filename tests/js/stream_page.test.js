import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";

import { attach, stateText } from "../../static/copilot/stream_page.js";
import {
  CountingTarget,
  FakeClock,
  FakeDocument,
  FakeElement,
  FakeNet,
  flush,
  frame,
} from "./fakes.js";

/** The stream's modules: what stream.js was before it was split. */
const SOURCES = ["sse_parser.js", "stream.js", "stream_page.js"].map(
  (name) => new URL(`../../static/copilot/${name}`, import.meta.url),
);

/** The markup the job page renders, as fake elements. */
function page({ lastEventId = "0", heartbeatMs = "10000", loginUrl = null } = {}) {
  const doc = new FakeDocument();
  const attrs = {
    "data-events-url": "/jobs/abc/events",
    "data-last-event-id": lastEventId,
    "data-heartbeat-ms": heartbeatMs,
  };
  if (loginUrl) attrs["data-login-url"] = loginUrl;
  const root = new FakeElement("section", attrs, doc);
  const stateEl = root.appendChild(new FakeElement("p", { "data-stream-state": "" }, doc));
  const button = root.appendChild(new FakeElement("button", { "data-stream-reconnect": "" }, doc));
  const clock = new FakeClock();
  const net = new FakeNet();
  const win = new CountingTarget();
  win.location = { pathname: "/jobs/abc/", search: "?tab=log" };
  const received = [];
  root.addEventListener("copilot:event", (e) => received.push(e.detail));
  const binding = attach(root, {
    fetch: net.fetch,
    timers: clock,
    now: clock.now,
    random: () => 0.5,
    window: win,
  });
  return { root, stateEl, button, clock, net, win, received, binding };
}

test("reads its settings from data attributes and shows Live", async () => {
  const p = page({ lastEventId: "12", heartbeatMs: "10000" });
  await flush();
  const req = p.net.last;
  assert.equal(req.url, "/jobs/abc/events?last_event_id=12");
  assert.equal(req.header("Last-Event-ID"), "12");
  assert.equal(p.binding.stream.heartbeatMs, 10000);
  assert.equal(p.stateEl.textContent, "Connecting\u2026");
  assert.equal(p.button.hidden, true);
  req.respond(200);
  await flush();
  assert.equal(p.stateEl.textContent, "Live");
  assert.equal(p.stateEl.getAttribute("data-stream-state"), "open");
  p.binding.stop();
});

test("dispatches copilot:event with {id, type, data} for each event", async () => {
  const p = page();
  await flush();
  const req = p.net.last.respond(200);
  req.push(frame({ id: 1, event: "progress", data: { phase: "<img src=x onerror=alert(1)>" } }));
  await flush();
  assert.deepEqual(p.received, [
    { id: 1, type: "progress", data: { phase: "<img src=x onerror=alert(1)>" } },
  ]);
  p.binding.stop();
});

test("shows the attempt while reconnecting, and Connection lost with the button", async () => {
  const p = page();
  p.net.onRequest = (req) => Promise.resolve().then(() => req.fail());
  p.net.last.fail();
  await flush();
  assert.equal(p.stateEl.textContent, "Reconnecting (attempt 1 of 3)\u2026");
  assert.equal(p.button.hidden, true);
  await p.clock.advance(1000);
  assert.equal(p.stateEl.textContent, "Reconnecting (attempt 2 of 3)\u2026");
  await p.clock.advance(2000 + 4000);
  assert.equal(p.stateEl.textContent, "Connection lost");
  assert.equal(p.stateEl.getAttribute("data-stream-state"), "lost");
  assert.equal(p.button.hidden, false);

  // The button resets the counter and connects; the stream opens and the button hides.
  p.net.onRequest = null;
  p.button.dispatchEvent(new Event("click"));
  await flush();
  assert.equal(p.net.requests.length, 5);
  p.net.last.respond(200);
  await flush();
  assert.equal(p.stateEl.textContent, "Live");
  assert.equal(p.button.hidden, true);
  p.binding.stop();
});

test("a planned rotation keeps showing Live", async () => {
  const p = page();
  await flush();
  p.net.last.respond(200).push(frame({ event: "reconnect", data: null }));
  await flush();
  assert.equal(p.net.requests.length, 2);
  assert.equal(p.stateEl.textContent, "Live");
  p.binding.stop();
});

test("Finished after the terminal event", async () => {
  const p = page();
  await flush();
  p.net.last.respond(200).push(frame({ id: 1, event: "result", data: { terminal: true } }));
  await flush();
  assert.equal(p.stateEl.textContent, "Finished");
  assert.equal(p.clock.pending, 0);
  assert.equal(p.win.count("online"), 0);
});

test("unauthorized: a link to log in again, built without HTML", async () => {
  const p = page({ loginUrl: "/login/" });
  await flush();
  p.net.last.respond(401, { contentType: "text/plain" });
  await flush();
  assert.equal(p.stateEl.textContent, "Please log in again");
  assert.equal(p.stateEl.children.length, 1);
  const link = p.stateEl.children[0];
  assert.equal(link.tagName, "A");
  assert.equal(link.href, "/login/?next=%2Fjobs%2Fabc%2F%3Ftab%3Dlog");
  assert.equal(p.button.hidden, true);
  await p.clock.advance(60000);
  assert.equal(p.net.requests.length, 1);
});

test("gone: a message, no retry", async () => {
  const p = page();
  await flush();
  p.net.last.respond(404, { contentType: "text/plain" });
  await flush();
  assert.equal(p.stateEl.textContent, "This job does not exist or is not yours.");
  assert.equal(p.stateEl.getAttribute("data-stream-state"), "gone");
});

test("pagehide stops; a page restored from the back/forward cache resumes where it was", async () => {
  const p = page();
  await flush();
  const first = p.net.last.respond(200);
  first.push(frame({ id: 3, event: "progress", data: {} }));
  await flush();
  p.win.dispatchEvent(new Event("pagehide"));
  await flush();
  assert.ok(first.aborted);
  assert.equal(p.binding.stream.state, "stopped");
  assert.equal(p.clock.pending, 0);
  const restored = new Event("pageshow");
  restored.persisted = true;
  p.win.dispatchEvent(restored);
  await flush();
  assert.equal(p.net.requests.length, 2);
  assert.equal(p.net.last.header("Last-Event-ID"), "3");
  p.binding.stop();
  assert.equal(p.clock.pending, 0);
});

test("the stream's modules never write HTML", () => {
  for (const source of SOURCES) {
    const text = fs.readFileSync(source, "utf8");
    assert.doesNotMatch(text, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/, source.pathname);
  }
});

test("the states' texts, as the page shows them", () => {
  assert.equal(stateText("connecting", { attempt: 0 }), "Connecting\u2026");
  assert.equal(stateText("connecting", { attempt: 2, of: 3 }), "Reconnecting (attempt 2 of 3)\u2026");
  assert.equal(stateText("connecting", { attempt: 1, planned: true }), null);
  assert.equal(stateText("open"), "Live");
  assert.equal(stateText("reconnecting", { attempt: 3, of: 3 }), "Reconnecting (attempt 3 of 3)\u2026");
  assert.equal(stateText("lost"), "Connection lost");
  assert.equal(stateText("done"), "Finished");
  assert.equal(stateText("gone"), "This job does not exist or is not yours.");
  assert.equal(stateText("unauthorized"), "Please log in again");
  assert.equal(stateText("stopped"), "Stopped");
  assert.equal(stateText("no such state"), null);
});
