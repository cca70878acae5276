/*
 * static/copilot/*.js are ES modules a browser loads as they are, with no build step: each one
 * imports its siblings by relative path only, and none but the page's entry point
 * (job_page_main.js) does anything when it is imported.
 */

import test from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";

const DIR = new URL("../../static/copilot/", import.meta.url);
const ENTRY = "job_page_main.js";
const MODULES = fs
  .readdirSync(DIR)
  .filter((name) => name.endsWith(".js"))
  .sort();

/** Run `script` as an ES module in a fresh Node (cwd static/copilot/); its stdout as JSON. */
function runModule(script) {
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: DIR,
    encoding: "utf8",
    timeout: 20000,
  });
  return JSON.parse(out);
}

test("the product modules are all there", () => {
  assert.deepEqual(MODULES, [
    "agent_diagram.js",
    "job_notify.js",
    "job_page.js",
    "job_page_main.js",
    "job_status_text.js",
    "sse_parser.js",
    "stream.js",
    "stream_page.js",
  ]);
});

test("every import is a sibling module by relative path, as a browser resolves it", () => {
  const specifier = /\b(?:import|export)\b[^;'"]*?\bfrom\s*["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)|^\s*import\s*["']([^"']+)["']/gm;
  for (const name of MODULES) {
    const source = fs.readFileSync(new URL(name, DIR), "utf8");
    assert.doesNotMatch(source, /\brequire\s*\(|module\.exports/, `${name} is CommonJS`);
    for (const match of source.matchAll(specifier)) {
      const target = match[1] || match[2] || match[3];
      assert.match(target, /^\.\/[a-z_]+\.js$/, `${name} imports ${target}`);
      assert.ok(MODULES.includes(target.slice(2)), `${name} imports ${target}: no such module`);
    }
  }
});

test("importing a module runs nothing: no window, document, fetch or timer is touched", () => {
  const names = MODULES.filter((name) => name !== ENTRY);
  const exports = runModule(`
    for (const name of ["window", "document", "location", "fetch", "setTimeout", "setInterval"]) {
      Object.defineProperty(globalThis, name, {
        get() { throw new Error("touched " + name + " on import"); },
      });
    }
    const out = {};
    for (const name of ${JSON.stringify(names)}) {
      const module = await import("./" + name);
      out[name] = Object.fromEntries(Object.entries(module).map(([k, v]) => [k, typeof v]));
    }
    const { CopilotStream } = await import("./stream.js");
    out.CopilotStream = Object.fromEntries(
      Object.entries(CopilotStream).map(([k, v]) => [k, typeof v]),
    );
    process.stdout.write(JSON.stringify(out));
  `);
  assert.deepEqual(exports, {
    "agent_diagram.js": {
      draw: "function",
      drawAll: "function",
      layout: "function",
      linkPath: "function",
      nodeLines: "function",
      nodeTooltip: "function",
      shorten: "function",
    },
    "job_notify.js": {
      bindButton: "function",
      buttonState: "function",
      notifyEnd: "function",
      rememberEnd: "function",
      takeEnd: "function",
    },
    "job_page.js": { eventLine: "function", formatElapsed: "function", start: "function" },
    "job_status_text.js": {
      STATUS_LABELS: "object",
      TERMINAL: "object",
      announcement: "function",
      endAnnouncement: "function",
      endNotice: "function",
      pageTitle: "function",
      progressStep: "function",
      statusLabel: "function",
      titleState: "function",
    },
    "sse_parser.js": { SSEParser: "function" },
    "stream.js": {
      CopilotStream: "object",
      JobStream: "function",
      SSEParser: "function",
      STATES: "object",
      parseSeq: "function",
      retryAfterMs: "function",
      withLastEventId: "function",
    },
    "stream_page.js": { attach: "function", stateText: "function" },
    CopilotStream: {
      JobStream: "function",
      SSEParser: "function",
      STATES: "object",
      withLastEventId: "function",
    },
  });
});

test("the entry point starts the page once the document is parsed, not before", () => {
  const calls = runModule(`
    const calls = [];
    const document = new EventTarget();
    document.readyState = "loading";
    document.querySelector = (selector) => {
      calls.push(selector);
      return null; // not a job page, no diagram: nothing more to do
    };
    globalThis.document = document;
    globalThis.window = { document };
    await import("./${ENTRY}");
    calls.push("-- parsed");
    document.readyState = "interactive";
    document.dispatchEvent(new Event("DOMContentLoaded"));
    process.stdout.write(JSON.stringify(calls));
  `);
  assert.deepEqual(calls, ["-- parsed", "[data-job-page]", "[data-agent-diagram]"]);
});
