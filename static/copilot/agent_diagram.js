/*
 * AgentDiagram: draws a generated agent as an SVG picture, in the page, with no dependencies.
 *
 * The page holds the diagram's data in a <script type="application/json" id="…"> (Django's
 * json_script) and an element that names it:
 *   <figure data-agent-diagram="agent-diagram-data"></figure>
 * The data (built by copilot.web.agent_diagram.agent_diagram) is
 *   {"nodes": [{"id", "step", "label", "inputs": [{"name", "value"}], "block_id", "x", "y", …}],
 *    "links": [{"source", "sink", "source_name", "sink_name", "label"}]}
 * with the nodes in reading order (step 1 first); the page lists the same steps as text, which
 * the picture names as its description (aria-describedby on the figure).
 *
 * Nodes are boxes labelled with their step number, their block's name and their main input
 * ("2 · Send email", "to: ana@example.com"), laid out top to bottom in layers by their
 * distance from the agent's inputs (a link goes from one layer to a later one; the editor's x
 * position orders the boxes of a layer), so a chain of blocks reads downwards and fits beside
 * the JSON. Links are curves with an arrow, labelled "output → input". The picture keeps its
 * natural size (never shrunk below legible) and its figure scrolls; a 50-node agent scrolls.
 * Every element is made with createElementNS and every text set with textContent: the agent
 * comes from upstream and is never parsed as markup.
 *
 * A plain ES module with nothing run on import: job_page_main.js imports it when the page has
 * a [data-agent-diagram] and calls drawAll(document); Node can import it (layout is pure).
 */


const SVG_NS = "http://www.w3.org/2000/svg";
const NODE_W = 220;
const NODE_H = 50;
const GAP_X = 40;
const GAP_Y = 60;
const PAD = 24;
const MAX_LABEL = 26;
const MAX_INPUT = 30;

/** A node's two lines: "2 · Send email" and its first main input ("to: ana@example.com"). */
export function nodeLines(node) {
  const head = (node.step ? node.step + " \u00b7 " : "") + String(node.label);
  const inputs = Array.isArray(node.inputs) ? node.inputs : [];
  const first = inputs[0];
  const more = inputs.length > 1 ? " (+" + (inputs.length - 1) + ")" : "";
  return {
    title: shorten(head, MAX_LABEL),
    detail: first ? shorten(first.name + ": " + first.value, MAX_INPUT - more.length) + more : "",
  };
}

/** A node's tooltip: its name, every main input, and its block id. */
export function nodeTooltip(node) {
  const inputs = Array.isArray(node.inputs) ? node.inputs : [];
  const lines = [(node.step ? node.step + ". " : "") + String(node.label)];
  for (const input of inputs) lines.push(input.name + ": " + input.value);
  lines.push("block " + String(node.block_id));
  return lines.join("\n");
}

/**
 * Where each node goes: {positions: Map(id -> {x, y}), width, height}. Pure.
 * A node's layer is the length of the longest chain of links leading to it (cycles are cut).
 * Nodes are {id, x}; links are {source, sink}.
 */
export function layout(spec) {
  const nodes = (spec && spec.nodes) || [];
  const links = (spec && spec.links) || [];
  const index = new Map(nodes.map((node, i) => [node.id, i]));
  const edges = [];
  for (const link of links) {
    const s = index.get(link.source);
    const t = index.get(link.sink);
    if (s !== undefined && t !== undefined && s !== t) edges.push([s, t]);
  }
  const forward = dropBackEdges(nodes.length, edges);
  const depth = nodes.map(() => 0);
  // Longest path on what is now acyclic: at most one relaxation round per node.
  for (let round = 0; round < nodes.length; round++) {
    let changed = false;
    for (const [s, t] of forward) {
      if (depth[t] < depth[s] + 1) {
        depth[t] = depth[s] + 1;
        changed = true;
      }
    }
    if (!changed) break;
  }
  const layers = [];
  nodes.forEach((node, i) => {
    (layers[depth[i]] = layers[depth[i]] || []).push(i);
  });
  const positions = new Map();
  let rows = 0;
  let cols = 0;
  layers.forEach((layer, row) => {
    if (!layer) return;
    layer.sort((a, b) => {
      const xa = typeof nodes[a].x === "number" ? nodes[a].x : Infinity;
      const xb = typeof nodes[b].x === "number" ? nodes[b].x : Infinity;
      return xa === xb ? a - b : xa < xb ? -1 : 1;
    });
    layer.forEach((i, col) => {
      positions.set(nodes[i].id, {
        x: PAD + col * (NODE_W + GAP_X),
        y: PAD + row * (NODE_H + GAP_Y),
      });
    });
    cols = Math.max(cols, layer.length);
    rows = row + 1;
  });
  return {
    positions: positions,
    width: PAD * 2 + Math.max(cols, 1) * NODE_W + Math.max(cols - 1, 0) * GAP_X,
    height: PAD * 2 + Math.max(rows, 1) * NODE_H + Math.max(rows - 1, 0) * GAP_Y,
  };
}

/**
 * The edges [s, t] minus those that close a cycle (a depth-first search's back edges), starting
 * from the nodes nothing links to, so that a loop back to the agent's start stays a back link.
 */
function dropBackEdges(count, edges) {
  const out = Array.from({ length: count }, () => []);
  const hasIncoming = new Array(count).fill(false);
  edges.forEach(([s, t], i) => {
    out[s].push([t, i]);
    hasIncoming[t] = true;
  });
  const state = new Array(count).fill(0); // 0 unseen, 1 on the current path, 2 done
  const back = new Set();
  const starts = [];
  for (let i = 0; i < count; i++) if (!hasIncoming[i]) starts.push(i);
  for (let i = 0; i < count; i++) if (hasIncoming[i]) starts.push(i);
  for (const start of starts) {
    if (state[start]) continue;
    const stack = [[start, 0]];
    state[start] = 1;
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [node, next] = top;
      if (next >= out[node].length) {
        state[node] = 2;
        stack.pop();
        continue;
      }
      top[1] = next + 1;
      const [target, edge] = out[node][next];
      if (state[target] === 1) {
        back.add(edge);
      } else if (state[target] === 0) {
        state[target] = 1;
        stack.push([target, 0]);
      }
    }
  }
  return edges.filter((_, i) => !back.has(i));
}

/** Room to the right of the boxes for links that go around them (and their labels). */
const SIDE = 190;
const BEND = 60;

/**
 * The curve of a link, and its midpoint (where its label goes). A link to the next layer runs
 * from the bottom of its source box to the top of its sink box; any other (one that skips
 * layers, goes back up, or stays in its layer) leaves and enters on the right, bending outwards
 * so it does not cross the boxes in between.
 */
export function linkPath(from, to) {
  const nextLayer = to.y - from.y === NODE_H + GAP_Y;
  let c;
  if (nextLayer) {
    const x0 = from.x + NODE_W / 2;
    const y0 = from.y + NODE_H;
    const x3 = to.x + NODE_W / 2;
    const y3 = to.y;
    const reach = Math.max(30, Math.abs(y3 - y0) / 2);
    c = [x0, y0, x0, y0 + reach, x3, y3 - reach, x3, y3];
  } else {
    const x0 = from.x + NODE_W;
    const y0 = from.y + NODE_H / 2;
    const x3 = to.x + NODE_W;
    const y3 = to.y + NODE_H / 2;
    const out = Math.max(x0, x3) + BEND;
    c = [x0, y0, out, y0, out, y3, x3, y3];
  }
  // The curve's midpoint (t = 1/2).
  const mid = {
    x: (c[0] + 3 * c[2] + 3 * c[4] + c[6]) / 8,
    y: (c[1] + 3 * c[3] + 3 * c[5] + c[7]) / 8,
  };
  const pt = (i) => c[i] + "," + c[i + 1];
  const d = "M" + pt(0) + " C" + pt(2) + " " + pt(4) + " " + pt(6);
  return { d: d, mid: mid, around: !nextLayer };
}

export function shorten(text, max) {
  text = String(text);
  return text.length > max ? text.slice(0, max - 1) + "\u2026" : text;
}

function el(doc, name, attrs, text) {
  const node = doc.createElementNS(SVG_NS, name);
  for (const key of Object.keys(attrs || {})) node.setAttribute(key, String(attrs[key]));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Remove what the container showed, but its caption (the figure's accessible name). */
function clear(container) {
  for (const child of Array.from(container.childNodes)) {
    if (String(child.nodeName).toLowerCase() !== "figcaption") container.removeChild(child);
  }
}

/** Draw ``spec`` into ``container`` (what it showed is removed, but a caption). Returns the <svg>. */
export function draw(container, spec, doc) {
  doc = doc || container.ownerDocument;
  const nodes = (spec && spec.nodes) || [];
  const links = (spec && spec.links) || [];
  const box = layout(spec);
  const paths = links.map((link) => {
    const from = box.positions.get(link.source);
    const to = box.positions.get(link.sink);
    return from && to ? linkPath(from, to) : null;
  });
  if (paths.some((path) => path && path.around)) box.width += SIDE;
  const svg = el(doc, "svg", {
    width: box.width,
    height: box.height,
    viewBox: "0 0 " + box.width + " " + box.height,
    role: "img",
    "aria-label":
      "Diagram of the agent: " + nodes.length + " blocks, " + links.length +
      " links; the steps are listed below it",
  });
  const defs = el(doc, "defs");
  const marker = el(doc, "marker", {
    id: "copilot-arrow",
    viewBox: "0 0 8 8",
    refX: 8,
    refY: 4,
    markerWidth: 8,
    markerHeight: 8,
    orient: "auto",
  });
  marker.appendChild(el(doc, "path", { d: "M0,0 L8,4 L0,8 z", class: "arrowhead" }));
  defs.appendChild(marker);
  svg.appendChild(defs);

  const linkLayer = el(doc, "g", { class: "links" });
  links.forEach((link, i) => {
    const path = paths[i];
    if (!path) return;
    const group = el(doc, "g", { class: "link" });
    group.appendChild(el(doc, "title", {}, String(link.label)));
    group.appendChild(el(doc, "path", { d: path.d, "marker-end": "url(#copilot-arrow)" }));
    group.appendChild(
      el(
        doc,
        "text",
        { x: path.mid.x + 6, y: path.mid.y + 4 },
        shorten(link.label, 34),
      ),
    );
    linkLayer.appendChild(group);
  });
  svg.appendChild(linkLayer);

  const nodeLayer = el(doc, "g", { class: "nodes" });
  for (const node of nodes) {
    const at = box.positions.get(node.id);
    const group = el(doc, "g", {
      class: "node",
      transform: "translate(" + at.x + "," + at.y + ")",
      "data-node-id": node.id,
    });
    const lines = nodeLines(node);
    group.appendChild(el(doc, "title", {}, nodeTooltip(node)));
    group.appendChild(el(doc, "rect", { width: NODE_W, height: NODE_H, rx: 6, ry: 6 }));
    group.appendChild(el(doc, "text", { x: 12, y: 22, class: "node-name" }, lines.title));
    group.appendChild(el(doc, "text", { x: 12, y: 40, class: "node-input" }, lines.detail));
    nodeLayer.appendChild(group);
  }
  svg.appendChild(nodeLayer);

  clear(container);
  container.appendChild(svg);
  return svg;
}

/** Draw every [data-agent-diagram] of the document from the JSON script it names. */
export function drawAll(doc) {
  for (const container of doc.querySelectorAll("[data-agent-diagram]")) {
    const source = doc.getElementById(container.getAttribute("data-agent-diagram"));
    if (!source) continue;
    try {
      draw(container, JSON.parse(source.textContent), doc);
    } catch (err) {
      clear(container);
      const note = doc.createElement("p");
      note.textContent = "The diagram could not be drawn; its steps are listed below.";
      container.appendChild(note);
      if (typeof console !== "undefined") console.error(err);
    }
  }
}
