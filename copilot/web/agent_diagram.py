"""A generated agent as a person reads it: its steps in order, each a block with its inputs.

The job page draws the agent (``static/copilot/agent_diagram.js``) from :func:`agent_diagram`'s
data and lists the same steps as text beside it (for screen readers and without JavaScript).
Block names come from the reference Agent Generator's catalogue, resolved here, so the browser
asks nothing of the Agent Generator. Steps are numbered in the order the diagram reads: by
layer (the longest chain of links leading to a node, cycles cut), then by the editor's x.

Everything here returns plain data; templates escape it (nothing is marked safe).
"""

from __future__ import annotations

import json
from typing import Any

from copilot.jobs.presenters import dicts_in

#: A node whose block the catalogue does not know (and whose metadata names none).
UNKNOWN_BLOCK = "Unknown block"
#: Characters of an input's value shown in the list (the diagram shortens further).
MAX_VALUE_CHARS = 120
#: Metadata keys an editor may use to name a node, tried before the catalogue.
NAME_KEYS = ("customized_name", "block_name", "name")


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _catalogue_block(block_id: object) -> Any:
    try:
        from agent_generator.reference.catalogue import block_by_id
    except ImportError:  # the reference catalogue is optional
        return None
    return block_by_id(block_id)


def _value_text(value: object) -> str:
    """An input's value on one line: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    text = " ".join(text.split())
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "\u2026"


def _node_name(node: dict[str, Any], block: Any) -> str:
    metadata = _dict(node.get("metadata"))
    for key in NAME_KEYS:
        name = metadata.get(key)
        if isinstance(name, str) and name.strip():
            return name.strip()
    return block.name if block is not None else UNKNOWN_BLOCK


def _main_inputs(node: dict[str, Any], block: Any, *, linked: set[str]) -> list[dict[str, str]]:
    """The inputs a person set (non-empty, not fed by a link), the block's own order first."""
    given = _dict(node.get("input_default"))
    order = [name for name in (block.inputs if block is not None else ()) if name in given]
    order += [name for name in given if name not in order]
    inputs = []
    for name in order:
        value = given[name]
        if name in linked or value is None or value == "" or value == [] or value == {}:
            continue
        inputs.append({"name": str(name), "value": _value_text(value)})
    return inputs


def _position(node: dict[str, Any]) -> tuple[float | None, float | None]:
    metadata = _dict(node.get("metadata"))
    position = metadata.get("position")
    if not isinstance(position, dict):
        return None, None
    x, y = position.get("x"), position.get("y")
    return (
        x if isinstance(x, int | float) else None,
        y if isinstance(y, int | float) else None,
    )


def _forward_edges(count: int, edges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``edges`` minus those that close a cycle, as ``agent_diagram.js``'s dropBackEdges."""
    out: list[list[tuple[int, int]]] = [[] for _ in range(count)]
    has_incoming = [False] * count
    for i, (s, t) in enumerate(edges):
        out[s].append((t, i))
        has_incoming[t] = True
    state = [0] * count  # 0 unseen, 1 on the current path, 2 done
    back: set[int] = set()
    starts = [i for i in range(count) if not has_incoming[i]]
    starts += [i for i in range(count) if has_incoming[i]]
    for start in starts:
        if state[start]:
            continue
        state[start] = 1
        stack = [[start, 0]]
        while stack:
            top = stack[-1]
            node, next_index = top
            if next_index >= len(out[node]):
                state[node] = 2
                stack.pop()
                continue
            top[1] = next_index + 1
            target, edge = out[node][next_index]
            if state[target] == 1:
                back.add(edge)
            elif state[target] == 0:
                state[target] = 1
                stack.append([target, 0])
    return [edge for i, edge in enumerate(edges) if i not in back]


def _reading_order(xs: list[float | None], edges: list[tuple[int, int]]) -> list[int]:
    """Node indexes by layer, then x, then their order in the agent (the diagram's order)."""
    forward = _forward_edges(len(xs), edges)
    depth = [0] * len(xs)
    for _ in range(len(xs)):
        changed = False
        for s, t in forward:
            if depth[t] < depth[s] + 1:
                depth[t] = depth[s] + 1
                changed = True
        if not changed:
            break
    return sorted(
        range(len(xs)),
        key=lambda i: (depth[i], xs[i] if xs[i] is not None else float("inf"), i),
    )


def agent_diagram(agent: dict[str, Any]) -> dict[str, Any]:
    """What the job page shows of an agent: ``{"nodes": [...], "links": [...]}``.

    A node is ``{"id", "step", "label", "inputs": [{"name", "value"}], "block_id", "x", "y",
    "feeds": [...], "fed_by": [...]}``, in reading order (``step`` counts from 1); ``feeds``
    and ``fed_by`` are ``{"step", "label", "output", "input"}`` (the other end of each link).
    A link is ``{"source", "sink", "source_name", "sink_name", "label"}``.
    """
    raw_nodes = dicts_in(agent.get("nodes"))
    ids = [str(node.get("id")) for node in raw_nodes]
    index = {node_id: i for i, node_id in enumerate(ids)}
    links = []
    edges = []
    for link in dicts_in(agent.get("links")):
        source, sink = str(link.get("source_id")), str(link.get("sink_id"))
        output, input_ = str(link.get("source_name", "")), str(link.get("sink_name", ""))
        links.append(
            {
                "source": source,
                "sink": sink,
                "source_name": output,
                "sink_name": input_,
                "label": f"{output} \u2192 {input_}",
            }
        )
        if source in index and sink in index and source != sink:
            edges.append((index[source], index[sink]))
    positions = [_position(node) for node in raw_nodes]
    order = _reading_order([x for x, _ in positions], edges)
    step_of = {ids[i]: step for step, i in enumerate(order, start=1)}

    nodes: list[dict[str, Any]] = []
    for i in order:
        node = raw_nodes[i]
        block = _catalogue_block(node.get("block_id"))
        linked = {link["sink_name"] for link in links if link["sink"] == ids[i]}
        x, y = positions[i]
        nodes.append(
            {
                "id": ids[i],
                "step": step_of[ids[i]],
                "label": _node_name(node, block),
                "inputs": _main_inputs(node, block, linked=linked),
                "block_id": str(node.get("block_id")),
                "x": x,
                "y": y,
            }
        )
    label_of: dict[str, str] = {node["id"]: node["label"] for node in nodes}
    for node in nodes:
        node["feeds"] = [
            _end(link, other=link["sink"], step_of=step_of, label_of=label_of)
            for link in links
            if link["source"] == node["id"]
        ]
        node["fed_by"] = [
            _end(link, other=link["source"], step_of=step_of, label_of=label_of)
            for link in links
            if link["sink"] == node["id"]
        ]
    return {"nodes": nodes, "links": links}


def _end(
    link: dict[str, str], *, other: str, step_of: dict[str, int], label_of: dict[str, str]
) -> dict[str, Any]:
    return {
        "step": step_of.get(other),
        "label": label_of.get(other, UNKNOWN_BLOCK),
        "output": link["source_name"],
        "input": link["sink_name"],
    }
