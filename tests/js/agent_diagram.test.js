import test from "node:test";
import assert from "node:assert/strict";

import { draw, layout, nodeLines, nodeTooltip } from "../../static/copilot/agent_diagram.js";

/** Just enough of an SVG document for draw(): elements with attributes, children, text. */
class Node {
  constructor(name) {
    this.nodeName = name;
    this.attrs = {};
    this.childNodes = [];
    this.text = "";
  }
  setAttribute(key, value) {
    this.attrs[key] = value;
  }
  appendChild(child) {
    this.childNodes.push(child);
    return child;
  }
  removeChild(child) {
    this.childNodes = this.childNodes.filter((c) => c !== child);
  }
  set textContent(value) {
    this.text = value;
  }
  get textContent() {
    return this.text + this.childNodes.map((c) => c.textContent).join("");
  }
  all(name) {
    const found = this.nodeName === name ? [this] : [];
    return found.concat(...this.childNodes.map((c) => c.all(name)));
  }
}
const doc = { createElementNS: (ns, name) => new Node(name) };

const NAMES = ["Schedule", "Web search", "Summarise text", "Send email"];
const INPUTS = [
  [{ name: "cron", value: "0 8 * * 1-5" }, { name: "timezone", value: "UTC" }],
  [{ name: "max_results", value: "5" }],
  [],
  [{ name: "to", value: "ana@example.com" }, { name: "subject", value: "A very long subject line" }],
];

/** A chain of `count` steps, as copilot.web.agent_diagram builds it. */
function chain(count) {
  const nodes = Array.from({ length: count }, (_, i) => ({
    id: "00000000-0000-4000-8000-" + String(i).padStart(12, "0"),
    step: i + 1,
    label: NAMES[i % 4],
    inputs: INPUTS[i % 4],
    block_id: "block-" + (i % 4),
    x: 0,
    y: i * 100,
  }));
  const links = nodes.slice(1).map((node, i) => ({
    source: nodes[i].id,
    sink: node.id,
    source_name: "out",
    sink_name: "in",
    label: "out \u2192 in",
  }));
  return { nodes, links };
}

test("a node reads as a step: number, block name and its first input, not its id", () => {
  const [schedule, search, summarise, email] = chain(4).nodes;
  assert.deepEqual(nodeLines(schedule), { title: "1 \u00b7 Schedule", detail: "cron: 0 8 * * 1-5 (+1)" });
  assert.deepEqual(nodeLines(search), { title: "2 \u00b7 Web search", detail: "max_results: 5" });
  assert.deepEqual(nodeLines(summarise), { title: "3 \u00b7 Summarise text", detail: "" });
  assert.equal(nodeLines(email).detail, "to: ana@example.com (+1)");
  assert.equal(
    nodeTooltip(email),
    "4. Send email\nto: ana@example.com\nsubject: A very long subject line\nblock block-3",
  );
  const long = nodeLines({ step: 12, label: "A block with a very long name indeed", inputs: [
    { name: "prompt", value: "x".repeat(80) }] });
  assert.equal(long.title.length, 26);
  assert.ok(long.detail.length <= 30 && long.detail.endsWith("\u2026"), long.detail);
});

test("a 50-node agent is drawn at its natural size, every node labelled", () => {
  const spec = chain(50);
  const figure = new Node("figure");
  const caption = figure.appendChild(new Node("figcaption"));
  figure.appendChild(new Node("noscript"));
  const svg = draw(figure, spec, doc);
  assert.deepEqual(figure.childNodes, [caption, svg]); // the caption (its name) stays
  const groups = svg.all("g").filter((g) => g.attrs.class === "node");
  assert.equal(groups.length, 50);
  const names = groups.map((g) => g.all("text").find((t) => t.attrs.class === "node-name").text);
  assert.deepEqual(names, spec.nodes.map((n) => n.step + " \u00b7 " + n.label));
  for (const group of groups) assert.doesNotMatch(group.all("text").map((t) => t.text).join(" "), /0000-4000/);
  // One layer per step: 50 rows of legible boxes, scrolled rather than shrunk.
  const box = layout(spec);
  assert.equal(svg.attrs.width, String(box.width));
  assert.equal(svg.attrs.height, String(box.height));
  assert.equal(box.height, 24 * 2 + 50 * 50 + 49 * 60);
  assert.match(svg.attrs["aria-label"], /50 blocks, 49 links; the steps are listed below it/);
  const linkTexts = svg.all("g").filter((g) => g.attrs.class === "link").map((g) => g.all("text")[0].text);
  assert.equal(linkTexts.length, 49);
  assert.ok(linkTexts.every((text) => text === "out \u2192 in"));
});
