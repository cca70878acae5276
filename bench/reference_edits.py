"""How the reference Agent Generator's edit time grows with the agent: N, 2N, 4N, 8N.

    python bench/reference_edits.py [--nodes 1000] [--repeat 5] [--no-gc]
        [--text-chars 20000] [--texts 1,2,3,4] [--import-from DIR:PACKAGE]

Each row is one ``POST /api/update-agent`` to the reference service, in-process over
``httpx.ASGITransport`` (the submit works the agent out, so its time is the edit's time),
with an agent of ``n`` nodes and about ``2.5n`` links built to hit what used to be quadratic:

- a Summarise -> Send email pair joined by ``n/2`` parallel links, where the request inserts
  a Translate step (every link between the two is checked and relinked);
- a Slack node with ``n/2`` links in from one node and ``n/2`` out to another, which the
  request removes (each source joined to each sink, once per distinct pair);
- the rest, a chain of Web search / Summarise nodes, for the request's other changes (set
  the subject, rename) to read past.

The limits are raised for the size series (``8n`` nodes is past the default 500); the last
rows are the service as it runs, at its default limits: the largest such agent it takes
(499 nodes: the request adds one and removes one), and the request of the issue (one Slack
node with 600 links in from 600 nodes and 600 out to 600 others, removed: 92 KB there,
106 KB here), which must be refused at once. ``ms`` is the median of ``--repeat``
runs; ``ratio`` is against the row above (2.0 is linear, 4.0 quadratic); ``RSS +MB`` is how
much bigger the process is after the row (first run). ``--no-gc`` turns Python's cycle
collector off while a request is timed (it is run between requests instead): its passes
over the whole heap, which grows with the jobs kept, add to the largest rows.

A second table times texts of ``--text-chars`` characters (20,000, the most the service
takes, by default) written to hit patterns that rescanned runs of text: the request's text
on a 10-node agent, or the description, each at ``T/4``, ``T/2`` and ``T`` characters
(``--texts`` picks some of them, by number). ``--import-from DIR:PACKAGE`` times another
copy of the service instead (an old one, given only the settings it knows).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import importlib
import json
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Any

import httpx

REQUEST = (
    "add a step to translate the summary into French; remove the slack step; "
    "change the subject to Weekly digest; rename the agent to Digest"
)
RAISED = {
    "max_nodes": 10**7,
    "max_links": 10**7,
    "max_body_bytes": 10**9,
    "max_text_chars": 10**6,
    "max_edits": 1_000,
}


def block_ids(package: str) -> dict[str, str]:
    catalogue = importlib.import_module(f"{package}.catalogue")
    names = ("Web search", "Summarise text", "Send email", "Post to Slack")
    return {name: catalogue.known_block(name).id for name in names}


def bench_agent(n: int, ids: dict[str, str]) -> dict[str, Any]:
    """``n`` nodes, about ``2.5n`` links, shaped as the module docstring says."""
    half = max(1, n // 2)
    nodes: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []

    def node(node_id: str, block: str) -> None:
        position = {"x": len(nodes) * 300, "y": 0}
        nodes.append(
            {
                "id": node_id,
                "block_id": ids[block],
                "input_default": {"query": "solar power"} if block == "Web search" else {},
                "metadata": {"position": position},
            }
        )

    def link(source: str, source_name: str, sink: str, sink_name: str) -> None:
        links.append(
            {
                "id": f"l{len(links)}",
                "source_id": source,
                "sink_id": sink,
                "source_name": source_name,
                "sink_name": sink_name,
                "is_static": False,
            }
        )

    for index in range(max(0, n - 5)):
        node(f"c{index}", "Web search" if index % 2 == 0 else "Summarise text")
        if index:
            link(f"c{index - 1}", "results", f"c{index}", "text")
    node("summary", "Summarise text")
    node("email", "Send email")
    node("into_slack", "Web search")
    node("slack", "Post to Slack")
    node("after_slack", "Summarise text")
    for index in range(half):
        link("summary", "summary", "email", f"body_{index}")
        link("into_slack", f"results_{index}", "slack", "message")
        link("slack", f"status_{index}", "after_slack", "text")
    return {
        "id": "bench-agent",
        "version": 1,
        "is_active": True,
        "name": "Bench",
        "description": "Search, summarise, email and post to Slack",
        "nodes": nodes,
        "links": links,
    }


def issue_agent(ids: dict[str, str], fan: int = 600) -> dict[str, Any]:
    """The issue's agent: one Slack node, ``fan`` distinct nodes in and ``fan`` out."""
    nodes: list[dict[str, Any]] = [{"id": "hub", "block_id": ids["Post to Slack"]}]
    nodes += [{"id": f"s{i}"} for i in range(fan)] + [{"id": f"t{i}"} for i in range(fan)]
    links = [
        {"source_id": f"s{i}", "sink_id": "hub", "source_name": "o", "sink_name": "message"}
        for i in range(fan)
    ]
    links += [
        {"source_id": "hub", "sink_id": f"t{i}", "source_name": "status", "sink_name": "i"}
        for i in range(fan)
    ]
    agent = {"id": "a1", "version": 1, "name": "A", "description": ""}
    return {**agent, "nodes": nodes, "links": links}


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def time_update(
    app: Any, body: bytes, *, repeat: int, no_gc: bool, path: str = "/api/update-agent"
) -> tuple[int, list[float], float, str]:
    """(status, seconds per run, RSS growth in MB after the first run, answer excerpt)."""
    transport = httpx.ASGITransport(app=app)
    headers = {"content-type": "application/json", "x-reference-fault": "duration=0"}
    seconds: list[float] = []
    status, grown, excerpt = 0, 0.0, ""
    async with httpx.AsyncClient(transport=transport, base_url="http://reference") as client:
        for run in range(repeat):
            if no_gc:
                gc.collect()
                gc.disable()
            before = rss_mb()
            start = time.perf_counter()
            answer = await client.post(path, content=body, headers=headers)
            seconds.append(time.perf_counter() - start)
            gc.enable()
            if run == 0:
                status, grown, excerpt = answer.status_code, rss_mb() - before, answer.text[:120]
    return status, seconds, grown, excerpt


def make_app(package: str, **wanted: Any) -> Any:
    """The package's app with the settings it knows of ``wanted`` (an old copy has fewer)."""
    reference = importlib.import_module(package)
    known = {field.name for field in dataclasses.fields(reference.ReferenceSettings)}
    settings = reference.ReferenceSettings(**{k: v for k, v in wanted.items() if k in known})
    return reference.create_app(settings=settings)


def body_of(agent: dict[str, Any], request: str) -> bytes:
    payload = {"update_request": request, "current_agent_json": agent}
    return json.dumps(payload, separators=(",", ":")).encode()


# (what, path, the text made of `chars` characters, the body around it)
TEXTS: tuple[tuple[str, str, Any, Any], ...] = (
    (
        '"add a step" + spaces + line break',
        "/api/update-agent",
        lambda chars: "add a step" + " " * (chars - 11) + "\n",
        "update",
    ),
    (
        '"change x" + spaces + "y"',
        "/api/update-agent",
        lambda chars: "change x" + " " * (chars - 9) + "y",
        "update",
    ),
    (
        '"a-a-a-..." (no "@")',
        "/api/decompose-description",
        lambda chars: ("a-" * chars)[:chars],
        "decompose",
    ),
    (
        '"with a, with a, ..."',
        "/api/decompose-description",
        lambda chars: ("with a, " * chars)[:chars],
        "decompose",
    ),
)


async def text_rows(
    *, package: str, chars: int, texts: list[int], repeat: int, no_gc: bool
) -> list[str]:
    ids = block_ids(package)
    app = make_app(package, job_seconds=0.0)
    agent = bench_agent(10, ids)
    rows = [
        "| text | chars | status | ms (median) | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for number, (label, path, make_text, kind) in enumerate(TEXTS, start=1):
        if number not in texts:
            continue
        previous = None
        for size in (chars // 4, chars // 2, chars):
            text = make_text(size)
            payload = (
                {"update_request": text, "current_agent_json": agent}
                if kind == "update"
                else {"description": text}
            )
            body = json.dumps(payload, separators=(",", ":")).encode()
            status, seconds, _, _ = await time_update(
                app, body, repeat=repeat, no_gc=no_gc, path=path
            )
            median = statistics.median(seconds)
            ratio = f"{median / previous:.2f}" if previous else ""
            previous = median
            rows.append(
                f"| {number}. {label} | {size:,} | {status} | {median * 1000:,.1f} | {ratio} |"
            )
    return rows


async def bench(*, package: str, nodes: int, repeat: int, no_gc: bool) -> list[str]:
    ids = block_ids(package)
    rows = [
        "| agent | nodes | links | body KB | status | ms (median) | ratio | RSS +MB |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    notes: list[str] = []
    previous = None
    raised = make_app(package, job_seconds=0.0, **RAISED)
    for n in (nodes, 2 * nodes, 4 * nodes, 8 * nodes):
        agent = bench_agent(n, ids)
        body = body_of(agent, REQUEST)
        status, seconds, grown, _ = await time_update(raised, body, repeat=repeat, no_gc=no_gc)
        median = statistics.median(seconds)
        ratio = f"{median / previous:.2f}" if previous else ""
        previous = median
        rows.append(
            f"| N = {n:,} (limits raised) | {len(agent['nodes']):,} | {len(agent['links']):,} "
            f"| {len(body) / 1024:,.0f} | {status} | {median * 1000:,.1f} | {ratio} | {grown:.1f} |"
        )
    default = make_app(package, job_seconds=0.0)
    at_limits = bench_agent(499, ids)
    for label, agent, request in (
        ("at the default limits", at_limits, REQUEST),
        ("the issue's request", issue_agent(ids), "remove the slack step"),
    ):
        body = body_of(agent, request)
        timed = await time_update(default, body, repeat=repeat, no_gc=no_gc)
        status, seconds, grown, excerpt = timed
        rows.append(
            f"| {label} | {len(agent['nodes']):,} | {len(agent['links']):,} "
            f"| {len(body) / 1024:,.0f} | {status} | {statistics.median(seconds) * 1000:,.1f} "
            f"| | {grown:.1f} |"
        )
        if status != 202:
            notes.append(f"{label}: `{excerpt}...`")
    return [*rows, "", *notes]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000, help="N (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row (default: 5)")
    parser.add_argument(
        "--no-gc", action="store_true", help="no cycle collection while a request is timed"
    )
    parser.add_argument(
        "--text-chars", type=int, default=20_000, help="T for the texts (default: 20000)"
    )
    parser.add_argument(
        "--texts", default="1,2,3,4", help="which texts to time, by number (default: all)"
    )
    parser.add_argument(
        "--import-from",
        default="",
        metavar="DIR:PACKAGE",
        help="time PACKAGE found in DIR instead of agent_generator.reference",
    )
    args = parser.parse_args(argv)
    package = "agent_generator.reference"
    if args.import_from:
        directory, _, package = args.import_from.partition(":")
        sys.path.insert(0, directory)
    timing = {"package": package, "repeat": args.repeat, "no_gc": args.no_gc}
    rows = asyncio.run(bench(nodes=args.nodes, **timing))
    texts = [int(number) for number in args.texts.split(",") if number]
    rows += ["", *asyncio.run(text_rows(chars=args.text_chars, texts=texts, **timing))]
    command = shlex.join(["python", "bench/reference_edits.py", *sys.argv[1:]])
    print(f"$ {command}")
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}; package {package}"
    )
    print()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
