"""A generated agent as the job page shows it: steps named by block, with their main inputs, in
reading order, and the list that is the diagram's text alternative (50 nodes too)."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.urls import reverse

from agent_generator.reference.catalogue import block_by_name
from copilot.jobs import services, transitions
from copilot.web.agent_diagram import UNKNOWN_BLOCK, agent_diagram

BLOCKS = ["Schedule", "Web search", "Summarise text", "Send email"]
INPUTS = [
    {"cron": "0 8 * * 1-5", "timezone": "UTC", "message": ""},
    {"max_results": 5, "query": "AI news"},
    {"text": "", "max_words": 150},
    {"to": "ana@example.com", "subject": "AI news", "body": ""},
]
PORTS = [("message", "query"), ("results", "text"), ("summary", "body"), ("status", "cron")]
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def chain(count: int) -> dict:
    """An agent of ``count`` nodes, each linked to the next, listed last first (the order of
    ``nodes`` is not the order of the steps)."""
    nodes = [
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "block_id": block_by_name(BLOCKS[i % 4]).id,
            "input_default": dict(INPUTS[i % 4]),
            "metadata": {"position": {"x": 0, "y": 100 * i}},
        }
        for i in range(count)
    ]
    links = [
        {
            "id": f"link-{i}",
            "source_id": nodes[i]["id"],
            "sink_id": nodes[i + 1]["id"],
            "source_name": PORTS[i % 4][0],
            "sink_name": PORTS[i % 4][1],
        }
        for i in range(count - 1)
    ]
    return {"id": "agent", "name": "Digest", "nodes": nodes[::-1], "links": links}


def test_nodes_are_named_by_block_with_their_main_inputs_in_reading_order():
    diagram = agent_diagram(chain(4))
    assert [(n["step"], n["label"]) for n in diagram["nodes"]] == [
        (1, "Schedule"),
        (2, "Web search"),
        (3, "Summarise text"),
        (4, "Send email"),
    ]
    inputs = [[(i["name"], i["value"]) for i in n["inputs"]] for n in diagram["nodes"]]
    assert inputs == [
        [("cron", "0 8 * * 1-5"), ("timezone", "UTC")],  # the catalogue's order; empty left out
        [("max_results", "5")],  # query is fed by a link: not a set input
        [("max_words", "150")],
        [("to", "ana@example.com"), ("subject", "AI news")],
    ]
    first = diagram["nodes"][0]
    assert first["feeds"] == [
        {"step": 2, "label": "Web search", "output": "message", "input": "query"}
    ]
    assert first["fed_by"] == []
    assert diagram["links"][0] == {
        "source": first["id"],
        "sink": diagram["nodes"][1]["id"],
        "source_name": "message",
        "sink_name": "query",
        "label": "message \u2192 query",
    }


def test_an_unknown_block_is_named_by_its_metadata_or_as_unknown():
    agent = {
        "nodes": [
            {"id": "a", "block_id": "nope", "input_default": {"x": [1, 2]}, "metadata": {}},
            {"id": "b", "block_id": "nope", "metadata": {"customized_name": "My step"}},
            {"id": "c", "block_id": "nope", "input_default": {"i": "fed", "long": "y" * 500}},
        ],
        "links": [{"source_id": "c", "sink_id": "c", "source_name": "o", "sink_name": "i"}],
    }
    nodes = agent_diagram(agent)["nodes"]
    assert [n["label"] for n in nodes] == [UNKNOWN_BLOCK, "My step", UNKNOWN_BLOCK]
    assert nodes[0]["inputs"] == [{"name": "x", "value": "[1, 2]"}]
    assert nodes[2]["inputs"] == [{"name": "long", "value": "y" * 119 + "\u2026"}]  # "i" is fed
    assert nodes[2]["feeds"] == [{"step": 3, "label": UNKNOWN_BLOCK, "output": "o", "input": "i"}]


def test_a_cycle_is_cut_where_it_loops_back():
    agent = chain(3)
    agent["nodes"].reverse()  # Schedule first: where a loop starts when every node has a link in
    agent["links"].append(
        {"source_id": agent["nodes"][2]["id"], "sink_id": agent["nodes"][0]["id"],
         "source_name": "status", "sink_name": "cron"}
    )  # fmt: skip
    assert [n["label"] for n in agent_diagram(agent)["nodes"]] == [
        "Schedule",
        "Web search",
        "Summarise text",
    ]


@pytest.mark.django_db
def test_a_50_node_agent_is_listed_step_by_step_beside_its_diagram(client, user):
    job = services.job_submit(user=user, kind="generate", payload={"instructions": "Do it"})
    job = transitions.job_mark_submitting(job=job).job
    job = transitions.job_mark_running(job=job, upstream_job_id="up-1").job
    job = transitions.job_complete(job=job, result={"type": "agent", "agent_json": chain(50)}).job
    client.force_login(user)
    page = client.get(reverse("job_detail", kwargs={"job_id": job.id})).content.decode()

    data = re.search(
        r'<script id="agent-diagram-data" type="application/json">(.*?)</script>', page, re.S
    ).group(1)
    nodes = json.loads(data)["nodes"]
    assert [n["step"] for n in nodes] == list(range(1, 51))
    assert [n["label"] for n in nodes] == [BLOCKS[i % 4] for i in range(50)]
    assert all(not UUID_RE.search(n["label"]) for n in nodes)

    steps = re.search(r"<ol class=\"copilot-agent-steps\".*?>(.*?)</ol>", page, re.S).group(1)
    items = re.findall(r'<li value="(\d+)" data-node-id="[^"]+">(.*?)</li>', steps, re.S)
    assert [int(value) for value, _ in items] == list(range(1, 51))
    texts = [" ".join(unescape(re.sub(r"<[^>]+>", "", text)).split()) for _, text in items]
    assert texts[0] == (
        "Schedule \u2014 cron: 0 8 * * 1-5; timezone: UTC "
        "Its message goes to step 2 (Web search) as query."
    )
    assert texts[3] == (
        "Send email \u2014 to: ana@example.com; subject: AI news "
        "Its status goes to step 5 (Schedule) as cron."
    )
    assert texts[4] == (
        "Schedule \u2014 timezone: UTC Its message goes to step 6 (Web search) as query."
    )
    assert texts[49] == "Web search \u2014 max_results: 5"
    assert all(not UUID_RE.search(text) for text in texts)
    assert 'aria-labelledby="agent-diagram-caption"' in page and 'tabindex="0"' in page
