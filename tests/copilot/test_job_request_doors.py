"""One rule, three doors: the JSON API, the new-job form and ``submit_job`` answer the same
invalid payload with the same message on the same field, and store nothing.

Every rule here is written once, in ``copilot.jobs.job_requests``; each case sends one payload
through all three doors and compares what they say. The form shows a protocol field's error
beside its own field (the text, the pasted agent); the command prints it on one line.
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from copilot.jobs import services
from copilot.jobs.exceptions import InvalidJobRequest
from copilot.jobs.job_requests import (
    AGENT_FIELD,
    MAX_AGENT_BYTES,
    MAX_AGENT_LINKS,
    MAX_AGENT_NODES,
    MAX_TEXT_CHARS,
    TEXT_FIELD,
    agent_too_large,
)
from copilot.jobs.json_limits import MAX_VALUE_DEPTH, NOT_FINITE, UNSTORABLE_TEXT, VALUE_TOO_DEEP
from copilot.jobs.models import GenerationJob

pytestmark = pytest.mark.django_db

ABSENT = object()  # the payload has no agent at all
FORM_FIELD = {"text": "text", "agent": "agent_json"}
REQUIRED = "This field is required."


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"a": value}
    return value


def nodes(count: int) -> list[dict[str, str]]:
    return [{"id": f"n{i}", "block_id": "b"} for i in range(count)]


def big_agent() -> dict[str, Any]:
    agent: dict[str, Any] = {"nodes": [], "links": [], "description": "x" * MAX_AGENT_BYTES}
    return agent


#: (id, kind, text, agent, the field at fault ("text" or "agent"), its message)
RULES = [
    ("text-blank", "decompose", "   ", ABSENT, "text", REQUIRED),
    (
        "text-too-long",
        "decompose",
        "x" * (MAX_TEXT_CHARS + 1),
        ABSENT,
        "text",
        f"Must be at most {MAX_TEXT_CHARS:,} characters (it has {MAX_TEXT_CHARS + 1:,}).",
    ),
    ("text-nul", "decompose", "a\x00b", ABSENT, "text", UNSTORABLE_TEXT),
    ("text-blank-generate", "generate", "", ABSENT, "text", REQUIRED),
    ("agent-missing", "update", "Add a step", ABSENT, "agent", REQUIRED),
    ("agent-a-list", "update", "Add a step", [], "agent", "Must be a JSON object."),
    ("agent-null", "customize", "Adapt it", None, "agent", "Must be a JSON object."),
    ("agent-nodes-text", "update", "Add a step", {"nodes": "x"}, "agent", "nodes: Must be a list."),
    (
        "agent-node-without-id",
        "update",
        "Add a step",
        {"nodes": [{"block_id": "b"}]},
        "agent",
        f"nodes[0].id: {REQUIRED}",
    ),
    (
        "agent-too-many-nodes",
        "customize",
        "Adapt it",
        {"nodes": nodes(MAX_AGENT_NODES + 1)},
        "agent",
        f"nodes: Must have at most {MAX_AGENT_NODES:,} items (it has {MAX_AGENT_NODES + 1:,}).",
    ),
    (
        "agent-too-many-links",
        "update",
        "Add a step",
        {"nodes": [], "links": [{}] * (MAX_AGENT_LINKS + 1)},
        "agent",
        f"links: Must have at most {MAX_AGENT_LINKS:,} items (it has {MAX_AGENT_LINKS + 1:,}).",
    ),
    (
        "agent-too-large",
        "update",
        "Add a step",
        big_agent(),
        "agent",
        agent_too_large(len(json.dumps(big_agent(), separators=(",", ":")).encode())),
    ),
    (
        "agent-too-deep",
        "update",
        "Add a step",
        {"nodes": [], "extra": nested(MAX_VALUE_DEPTH)},
        "agent",
        VALUE_TOO_DEEP,
    ),
    ("agent-nan", "customize", "Adapt it", {"nodes": [], "x": float("nan")}, "agent", NOT_FINITE),
    ("agent-nul", "update", "Add a step", {"name": "a\x00b"}, "agent", UNSTORABLE_TEXT),
]


def protocol_field(kind: str, which: str) -> str:
    return TEXT_FIELD[kind] if which == "text" else AGENT_FIELD[kind]


def api_errors(user, kind: str, text: str, agent: Any) -> dict[str, str]:
    out = StringIO()
    call_command("create_api_token", "--user", user.username, stdout=out)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().strip()}")
    body: dict[str, Any] = {"kind": kind, TEXT_FIELD[kind]: text}
    if agent is not ABSENT:
        body[AGENT_FIELD[kind]] = agent
    response = client.post("/api/jobs/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    return response.json()["errors"]


def form_errors(user, kind: str, text: str, agent: Any) -> dict[str, list[str]]:
    client = Client()
    client.force_login(user)
    data: dict[str, Any] = {"kind": kind, "text": text}
    if agent is not ABSENT:
        data["agent_json"] = json.dumps(agent)
    response = client.post("/jobs/new/", data)
    assert response.status_code == 200  # the form again, with its errors
    return dict(response.context["form"].errors)


def command_error(user, tmp_path, kind: str, text: str, agent: Any) -> str:
    argv = ["submit_job", "--kind", kind, "--description", text, "--user", user.username]
    if agent is not ABSENT:
        path = tmp_path / "agent.json"
        path.write_text(json.dumps(agent))
        argv += ["--agent-json", str(path)]
    with pytest.raises(CommandError) as raised:
        call_command(*argv, stdout=StringIO(), stderr=StringIO())
    return str(raised.value)


@pytest.mark.parametrize(
    ("kind", "text", "agent", "which", "message"),
    [pytest.param(*rule[1:], id=rule[0]) for rule in RULES],
)
def test_the_three_doors_say_the_same(user, tmp_path, kind, text, agent, which, message):
    field = protocol_field(kind, which)

    assert api_errors(user, kind, text, agent) == {field: message}
    errors = form_errors(user, kind, text, agent)
    assert errors == {FORM_FIELD[which]: [message]}
    assert command_error(user, tmp_path, kind, text, agent) == f"invalid job: {field}: {message}"
    assert not GenerationJob.objects.exists()


@pytest.mark.parametrize(
    ("kind", "agent"),
    [
        ("decompose", ABSENT),
        ("update", {"nodes": nodes(MAX_AGENT_NODES), "links": [{}] * MAX_AGENT_LINKS}),
        ("customize", {"nodes": [], "extra": nested(MAX_VALUE_DEPTH - 1)}),
    ],
    ids=["text-at-the-limit", "agent-at-the-size-limits", "agent-at-the-depth-limit"],
)
def test_the_three_doors_take_a_payload_at_the_limits(user, tmp_path, kind, agent):
    text = "y" * MAX_TEXT_CHARS
    out = StringIO()
    call_command("create_api_token", "--user", user.username, stdout=out)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().strip()}")
    body: dict[str, Any] = {"kind": kind, TEXT_FIELD[kind]: text}
    form: dict[str, Any] = {"kind": kind, "text": text}
    argv = ["submit_job", "--kind", kind, "--description", text, "--user", user.username]
    if agent is not ABSENT:
        body[AGENT_FIELD[kind]] = agent
        form["agent_json"] = json.dumps(agent)
        (tmp_path / "agent.json").write_text(json.dumps(agent))
        argv += ["--agent-json", str(tmp_path / "agent.json")]

    created = api.post("/api/jobs/", json.dumps(body), content_type="application/json")
    assert created.status_code == 201, created.content[:300]
    browser = Client()
    browser.force_login(user)
    assert browser.post("/jobs/new/", form).status_code == 302
    call_command(*argv, stdout=StringIO(), stderr=StringIO())
    requests = [job.request for job in GenerationJob.objects.all()]
    assert len(requests) == 3 and requests[0] == requests[1] == requests[2]


#: Rules only the API's body can break (the form and the command build these fields
#: themselves); the service (what the form and the command call) answers them the same.
API_ONLY = [
    ({"description": "x"}, {"kind": REQUIRED}),
    (
        {"kind": "paint", "description": "x"},
        {"kind": "Unknown kind 'paint'; use one of decompose, generate, update, customize."},
    ),
    (
        {"kind": "decompose", "description": "x", "colour": "red"},
        {"colour": "Unknown field; decompose takes description, library_agents, notify_email."},
    ),
    (
        {"kind": "decompose", "description": "x", "library_agents": {"a": 1}},
        {"library_agents": "Must be a list."},
    ),
    (
        {"kind": "decompose", "description": "x", "library_agents": [{"graph_version": "v1"}]},
        {"library_agents": "[0].graph_version: Must be a whole number."},
    ),
    (
        {"kind": "generate", "instructions": {}},
        {"instructions": "Needs 'goal' (text) or 'steps' (a non-empty list)."},
    ),
    (
        {"kind": "generate", "instructions": {"steps": [{"description": " "}]}},
        {"instructions": f"steps[0].description: {REQUIRED}"},
    ),
    ({"kind": "generate", "instructions": 7}, {"instructions": "Must be text or a JSON object."}),
    (
        {"kind": "update", "update_request": 7, "current_agent_json": {}},
        {"update_request": "Must be text."},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("body", "errors"), API_ONLY)
def test_rules_of_the_api_body_match_the_service(user, body, errors):
    out = StringIO()
    call_command("create_api_token", "--user", user.username, stdout=out)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().strip()}")
    response = client.post("/api/jobs/", json.dumps(body), content_type="application/json")
    assert (response.status_code, response.json()) == (400, {"errors": errors})
    payload = {name: value for name, value in body.items() if name != "kind"}
    with pytest.raises(InvalidJobRequest) as raised:
        services.job_submit(user=user, kind=body.get("kind", ""), payload=payload)
    if "kind" in body:
        assert raised.value.errors == errors
    assert not GenerationJob.objects.exists()
