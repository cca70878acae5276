"""The reference service's HTTP surface: routes, methods, validation, mounting."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from agent_generator.reference import ReferenceSettings, create_app

SUBMIT_PATHS = [
    "/api/decompose-description",
    "/api/generate-agent",
    "/api/update-agent",
    "/api/template-modification",
]
AGENT = {"id": "a1", "version": 1, "name": "A", "description": "", "nodes": [], "links": []}
GOOD_BODIES = {
    "/api/decompose-description": {"description": "Search the web for cats and email a@b.com"},
    "/api/generate-agent": {"instructions": {"goal": "Search for cats, email them to a@b.com"}},
    "/api/update-agent": {"update_request": "rename the agent to B", "current_agent_json": AGENT},
    "/api/template-modification": {
        "modification_request": "rename the agent to B",
        "template_agent_json": AGENT,
    },
}


async def test_health(reference_client: httpx.AsyncClient) -> None:
    answer = await reference_client.get("/health")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"status": "healthy", "blocks_loaded": True}


async def test_blocks_catalogue(reference_client: httpx.AsyncClient) -> None:
    answer = await reference_client.get("/api/blocks")
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is True
    blocks = body["blocks"]
    assert len(blocks) >= 15
    assert len({block["id"] for block in blocks}) == len(blocks)
    for block in blocks:
        uuid.UUID(block["id"])
        assert set(block) == {"id", "name", "description", "categories", "inputs", "outputs"}
        assert block["name"] and block["description"] and block["outputs"]
    names = {block["name"] for block in blocks}
    assert {"Schedule", "Web search", "Summarise text", "Send email", "Post to Slack"} <= names


async def test_block_ids_are_stable_across_apps() -> None:
    ids = []
    for _ in range(2):
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            ids.append([b["id"] for b in (await client.get("/api/blocks")).json()["blocks"]])
    assert ids[0] == ids[1]


@pytest.mark.parametrize("path", SUBMIT_PATHS)
async def test_every_submit_answers_202_with_a_valid_job_id(
    reference_client: httpx.AsyncClient, path: str
) -> None:
    answer = await reference_client.post(path, json=GOOD_BODIES[path])
    assert answer.status_code == 202, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", body["job_id"])
    assert body["status"] == "queued"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/decompose-description", "POST"),
        ("PUT", "/api/generate-agent", "POST"),
        ("POST", "/api/jobs/abc", "GET, DELETE"),
        ("POST", "/health", "GET"),
        ("DELETE", "/api/blocks", "GET"),
    ],
)
async def test_wrong_method_is_405(
    reference_client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    answer = await reference_client.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allow


@pytest.mark.parametrize("path", ["/", "/api", "/api/jobs", "/api/jobs/a/b", "/__stats"])
async def test_unknown_path_is_404(reference_client: httpx.AsyncClient, path: str) -> None:
    answer = await reference_client.get(path)
    assert answer.status_code == 404
    assert answer.json() == {"detail": "Not found."}


@pytest.mark.parametrize("job_id", ["nope", "..%2F..%2Fetc", "x" * 129])
async def test_unknown_or_malformed_job_id_is_404(
    reference_client: httpx.AsyncClient, job_id: str
) -> None:
    assert (await reference_client.get(f"/api/jobs/{job_id}")).status_code == 404
    assert (await reference_client.delete(f"/api/jobs/{job_id}")).status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/api/decompose-description", {}, "description", "This field is required."),
        ("/api/decompose-description", {"description": "  "}, "description", "Must not be empty."),
        ("/api/decompose-description", {"description": 3}, "description", "Must be a string."),
        ("/api/generate-agent", {}, "instructions", "This field is required."),
        (
            "/api/generate-agent",
            {"instructions": "do it"},
            "instructions",
            "Must be an object with 'steps' or 'goal'.",
        ),
        (
            "/api/generate-agent",
            {"instructions": {"steps": []}},
            "instructions.steps",
            "Must be a non-empty list of steps.",
        ),
        (
            "/api/generate-agent",
            {"instructions": {"steps": [{"description": ""}]}},
            "instructions.steps[0].description",
            "Must not be empty.",
        ),
        (
            "/api/update-agent",
            {"update_request": "add a step", "current_agent_json": [1]},
            "current_agent_json",
            "Must be an AgentJSON object.",
        ),
        (
            "/api/update-agent",
            {"current_agent_json": AGENT},
            "update_request",
            "This field is required.",
        ),
        (
            "/api/template-modification",
            {"modification_request": "x", "template_agent_json": "{}"},
            "template_agent_json",
            "Must be an AgentJSON object.",
        ),
        (
            "/api/template-modification",
            {"modification_request": "x", "template_agent_json": {"nodes": [3]}},
            "template_agent_json.nodes",
            "Must be a list of objects.",
        ),
        (
            "/api/decompose-description",
            {"description": "x", "library_agents": {}},
            "library_agents",
            "Must be a list of objects.",
        ),
    ],
)
async def test_bad_submit_bodies_are_400_with_field_errors(
    reference_app, reference_client: httpx.AsyncClient, path, body, field, message
) -> None:
    answer = await reference_client.post(path, json=body)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["errors"][field] == message
    assert answer.json()["detail"]
    assert reference_app.stats.jobs_created == 0


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b"\xff\xfe", b""])
async def test_non_object_bodies_are_400(
    reference_client: httpx.AsyncClient, content: bytes
) -> None:
    answer = await reference_client.post("/api/decompose-description", content=content)
    assert answer.status_code == 400
    assert set(answer.json()["errors"]) == {"body"}


async def test_mounted_under_a_root_path() -> None:
    app = create_app()
    transport = httpx.ASGITransport(app=app, root_path="/agent-generator")
    async with httpx.AsyncClient(transport=transport, base_url="http://portal") as client:
        assert (await client.get("/agent-generator/health")).status_code == 200
        answer = await client.post(
            "/agent-generator/api/decompose-description",
            json={"description": "Search for cats"},
        )
        assert answer.status_code == 202
        job = await client.get(f"/agent-generator/api/jobs/{answer.json()['job_id']}")
        assert job.status_code == 200


async def test_stats_endpoint_only_when_exposed() -> None:
    app = create_app(expose_stats=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
        await client.post("/api/decompose-description", json={"description": "x"})
        stats = (await client.get("/__stats")).json()
    assert stats == {
        "submits": 1,
        "jobs_created": 1,
        "polls": 0,
        "deletes": 0,
        "submits_by_key": {},
    }


async def test_lifespan_is_answered() -> None:
    app = create_app()
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.parametrize(
    "settings",
    [{"job_seconds": -1}, {"ttl_seconds": float("nan")}, {"faults": "explode"}],
)
def test_bad_settings_raise(settings) -> None:
    with pytest.raises(ValueError):
        ReferenceSettings(**settings)
