"""The reference service's stated limits, its fault hooks' bounds, and its linear matchers.

Each limit is accepted at its bound and answered 400 one past it, naming the setting, with
no job made; the refusals come before any work (items are not looked at, a body is not
read to its end). The matchers that replaced quadratic patterns are checked against the
plain patterns on many random texts.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from agent_generator.reference import ReferenceApp, ReferenceSettings, create_app
from agent_generator.reference.__main__ import build_parser
from agent_generator.reference.catalogue import known_block
from agent_generator.reference.edits import _CHANGE, _CLAUSE_SPLIT, _EDIT_VERBS
from agent_generator.reference.extract import _contained, _extract_target, _word_before_channel
from agent_generator.reference.text import _hide_lists, email_matches, protect, restore

UPDATE = "/api/update-agent"
GENERATE = "/api/generate-agent"
DECOMPOSE = "/api/decompose-description"
DEFAULTS = ReferenceSettings()
SLACK = known_block("Post to Slack").id
SEARCH = known_block("Web search").id


@pytest.fixture
def app() -> ReferenceApp:
    """The service at its default limits (short jobs)."""
    return create_app(settings=ReferenceSettings(job_seconds=0.2))


@pytest.fixture
async def client(app: ReferenceApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://reference.test") as c:
        yield c


def make_agent(nodes: int, links: int = 0) -> dict[str, Any]:
    """``nodes`` search nodes in a row; ``links`` parallel links from the first to the second."""
    return {
        "id": "agent-1",
        "version": 1,
        "name": "A",
        "description": "",
        "nodes": [{"id": f"n{i}", "block_id": SEARCH} for i in range(nodes)],
        "links": [
            {"source_id": "n0", "sink_id": "n1", "source_name": "results", "sink_name": f"in{i}"}
            for i in range(links)
        ],
    }


def hub_agent(sources: int, sinks: int, *, extra_link: bool = False) -> dict[str, Any]:
    """A Slack node with a link in from each of ``sources`` nodes and out to ``sinks``."""
    nodes = [{"id": "hub", "block_id": SLACK}]
    nodes += [{"id": f"s{i}"} for i in range(sources)] + [{"id": f"t{i}"} for i in range(sinks)]
    links = [
        {"source_id": f"s{i}", "sink_id": "hub", "source_name": "o", "sink_name": "message"}
        for i in range(sources)
    ] + [
        {"source_id": "hub", "sink_id": f"t{i}", "source_name": "status", "sink_name": "i"}
        for i in range(sinks)
    ]
    if extra_link:
        links.append({"source_id": "s0", "sink_id": "t0", "source_name": "o", "sink_name": "x"})
    return {
        "id": "hub",
        "version": 1,
        "name": "H",
        "description": "",
        "nodes": nodes,
        "links": links,
    }


def update_body(agent: dict[str, Any], request: str = "rename the agent to B") -> dict[str, Any]:
    return {"update_request": request, "current_agent_json": agent}


def assert_refused(answer: httpx.Response, *, setting: str, field: str) -> str:
    """A 400 in the protocol's shape naming ``setting``; returns the field's message."""
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == {"detail", "errors"}
    assert body["detail"].startswith(f"Over the limit {setting}: at most "), body
    assert list(body["errors"]) == [field], body
    return body["errors"][field]


def nesting(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((nesting(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(item) for item in value), default=0)
    return 0


# -- each limit: accepted at its bound, 400 one past it --------------------------------------


@pytest.mark.parametrize("count", [DEFAULTS.max_nodes, DEFAULTS.max_nodes + 1])
async def test_nodes_limit(client: httpx.AsyncClient, app: ReferenceApp, count: int) -> None:
    answer = await client.post(UPDATE, json=update_body(make_agent(count)))
    if count == 500:
        assert answer.status_code == 202, answer.text
        return
    message = assert_refused(answer, setting="max_nodes", field="current_agent_json.nodes")
    assert message == "At most 500 nodes; it has 501."
    assert app.stats.jobs_created == 0


@pytest.mark.parametrize("count", [DEFAULTS.max_links, DEFAULTS.max_links + 1])
async def test_links_limit(client: httpx.AsyncClient, count: int) -> None:
    body = {"modification_request": "rename it to B", "template_agent_json": make_agent(2, count)}
    answer = await client.post("/api/template-modification", json=body)
    if count == 2000:
        assert answer.status_code == 202, answer.text
        return
    message = assert_refused(answer, setting="max_links", field="template_agent_json.links")
    assert message == "At most 2,000 links; it has 2,001."


@pytest.mark.parametrize("depth", [DEFAULTS.max_json_depth, DEFAULTS.max_json_depth + 1])
async def test_json_depth_limit(client: httpx.AsyncClient, depth: int) -> None:
    agent = make_agent(1)
    value: list[Any] = []
    body = update_body(agent)
    agent["nodes"][0]["input_default"] = {"x": value}
    while nesting(body) < depth:
        value.append([])
        value = value[0]
    assert nesting(body) == depth
    answer = await client.post(UPDATE, json=body)
    if depth == 32:
        assert answer.status_code == 202, answer.text
        return
    assert assert_refused(answer, setting="max_json_depth", field="body") == (
        "At most 32 levels of JSON nesting; it has 33."
    )


@pytest.mark.parametrize("extra", [0, 1])
async def test_body_limit(client: httpx.AsyncClient, extra: int) -> None:
    def body(pad: int) -> bytes:
        payload = {
            "description": "Search the web for cat news and email it to me@example.com",
            "library_agents": [{"name": "p" * pad}],
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    size = DEFAULTS.max_body_bytes + extra
    content = body(size - len(body(0)))
    assert len(content) == size
    headers = {"content-type": "application/json"}
    answer = await client.post(DECOMPOSE, content=content, headers=headers)
    if extra == 0:
        assert answer.status_code == 202, answer.text
        return
    assert assert_refused(answer, setting="max_body_bytes", field="body") == (
        "At most 2,097,152 bytes of body; it has 2,097,153."
    )


@pytest.mark.parametrize("extra", [0, 1])
async def test_text_limit(client: httpx.AsyncClient, extra: int) -> None:
    goal = "Search the web for cat news and email it to me@example.com. "
    description = (goal * 400)[: DEFAULTS.max_text_chars + extra]
    answer = await client.post(DECOMPOSE, json={"description": description})
    if extra == 0:
        assert answer.status_code == 202, answer.text
        return
    message = assert_refused(answer, setting="max_text_chars", field="description")
    assert message == "At most 20,000 characters of text; it has 20,001."


async def test_text_limit_counts_all_steps_together(client: httpx.AsyncClient) -> None:
    steps = [{"description": "x" * 5_000}] * 4
    answer = await client.post(GENERATE, json={"instructions": {"steps": steps}})
    assert answer.status_code == 202, answer.text
    steps.append({"description": "y"})
    answer = await client.post(GENERATE, json={"instructions": {"steps": steps}})
    assert_refused(answer, setting="max_text_chars", field="instructions.steps")


@pytest.mark.parametrize("count", [DEFAULTS.max_nodes, DEFAULTS.max_nodes + 1])
async def test_steps_count_as_nodes(client: httpx.AsyncClient, count: int) -> None:
    steps = [{"description": f"search the web for topic {i}"} for i in range(count)]
    answer = await client.post(GENERATE, json={"instructions": {"steps": steps}})
    if count == 500:
        assert answer.status_code == 202, answer.text
        return
    assert_refused(answer, setting="max_nodes", field="instructions.steps")


async def test_a_goal_that_makes_too_many_steps_is_refused(client: httpx.AsyncClient) -> None:
    goal = ", ".join(["search the web for cats"] * 501) + " and email me@example.com"
    answer = await client.post(GENERATE, json={"instructions": {"goal": goal}})
    message = assert_refused(answer, setting="max_nodes", field="instructions.goal")
    assert message == "The agent this makes would have 502 nodes."


@pytest.mark.parametrize("count", [DEFAULTS.max_edits, DEFAULTS.max_edits + 1])
async def test_edits_limit(client: httpx.AsyncClient, count: int) -> None:
    request = "; ".join(f"rename the agent to A{i}" for i in range(count))
    answer = await client.post(UPDATE, json=update_body(make_agent(2), request))
    if count == 50:
        assert answer.status_code == 202, answer.text
        return
    message = assert_refused(answer, setting="max_edits", field="update_request")
    assert message == "At most 50 changes in one request; it has 51."


@pytest.mark.parametrize("extra_link", [False, True])
async def test_a_removal_that_would_make_too_many_links_is_refused(
    client: httpx.AsyncClient, app: ReferenceApp, extra_link: bool
) -> None:
    """Removing a node joins each source to each sink: 40 x 50 = 2,000 links, the bound."""
    agent = hub_agent(40, 50, extra_link=extra_link)
    answer = await client.post(UPDATE, json=update_body(agent, "remove the slack step"))
    if not extra_link:
        assert answer.status_code == 202, answer.text
        return
    message = assert_refused(answer, setting="max_links", field="update_request")
    assert message == "The agent this makes would have more than 2,000 links."
    assert app.stats.jobs_created == 0


@pytest.mark.parametrize("count", [DEFAULTS.max_nodes - 1, DEFAULTS.max_nodes])
async def test_an_addition_that_would_make_too_many_nodes_is_refused(
    client: httpx.AsyncClient, count: int
) -> None:
    request = "add a step to translate the results into French"
    answer = await client.post(UPDATE, json=update_body(make_agent(count), request))
    if count == 499:
        assert answer.status_code == 202, answer.text
        return
    message = assert_refused(answer, setting="max_nodes", field="update_request")
    assert message == "The agent this makes would have more than 500 nodes."


# -- refused before any work ------------------------------------------------------------------


async def test_the_issues_request_is_refused_without_a_job(
    client: httpx.AsyncClient, app: ReferenceApp
) -> None:
    """One Slack node with 600 links in from 600 nodes and 600 out to 600 others."""
    body = update_body(hub_agent(600, 600), "remove the slack step")
    answer = await client.post(UPDATE, json=body, headers={"X-Reference-Fault": "duration=2"})
    assert_refused(answer, setting="max_nodes", field="current_agent_json.nodes")
    assert app.stats.jobs_created == 0


@pytest.mark.parametrize("key", ["nodes", "links"])
async def test_sizes_are_refused_before_the_items_are_read(
    client: httpx.AsyncClient, key: str
) -> None:
    """Items that are not even objects: the size is what is answered, not the items."""
    agent = make_agent(2)
    agent[key] = ["not an object"] * (getattr(DEFAULTS, f"max_{key}") + 1)
    answer = await client.post(UPDATE, json=update_body(agent))
    assert_refused(answer, setting=f"max_{key}", field=f"current_agent_json.{key}")
    agent[key] = ["not an object"]
    answer = await client.post(UPDATE, json=update_body(agent))
    assert answer.json()["errors"] == {f"current_agent_json.{key}": "Must be a list of objects."}


async def test_an_oversized_body_is_not_read_to_its_end() -> None:
    app = create_app(settings=ReferenceSettings(max_body_bytes=1_000))
    chunks_read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        for _ in range(100):
            chunks_read += 1
            yield b" " * 100

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://reference.test") as c:
        answer = await c.post(DECOMPOSE, content=body())
        assert_refused(answer, setting="max_body_bytes", field="body")
        assert chunks_read == 11, "reading stops at the chunk that passes 1,000 bytes"
        chunks_read = 0
        answer = await c.post(DECOMPOSE, content=body(), headers={"content-length": "10000"})
        message = assert_refused(answer, setting="max_body_bytes", field="body")
        assert message == "At most 1,000 bytes of body; it has 10,000."
        assert chunks_read == 0, "a Content-Length over the limit is refused before reading"


async def test_a_deeply_nested_body_is_a_400_not_a_crash(client: httpx.AsyncClient) -> None:
    content = "[" * 100_000 + "]" * 100_000
    answer = await client.post(DECOMPOSE, content=content)
    assert_refused(answer, setting="max_json_depth", field="body")


async def test_the_limits_are_settings() -> None:
    settings = ReferenceSettings(max_nodes=3, max_links=1, max_text_chars=30, max_edits=1)
    transport = httpx.ASGITransport(app=create_app(settings=settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://reference.test") as c:
        answer = await c.post(UPDATE, json=update_body(make_agent(3, 1)))
        assert answer.status_code == 202, answer.text
        answer = await c.post(UPDATE, json=update_body(make_agent(4)))
        assert_refused(answer, setting="max_nodes", field="current_agent_json.nodes")
        request = "rename the agent to B; rename it to C"
        answer = await c.post(UPDATE, json=update_body(make_agent(3), request))
        assert_refused(answer, setting="max_text_chars", field="update_request")


@pytest.mark.parametrize(
    "name",
    ["max_body_bytes", "max_nodes", "max_links", "max_json_depth", "max_text_chars", "max_edits"],
)
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "5"])
def test_limit_settings_must_be_whole_numbers_from_one(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be a whole number >= 1"):
        ReferenceSettings(**{name: bad})  # type: ignore[arg-type]


@pytest.mark.parametrize("argument", ["--max-nodes=0", "--max-links=x", "--max-edits=-2"])
def test_limit_flags_refuse_bad_values(argument: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([argument])


def test_limit_flags_set_the_limits() -> None:
    args = build_parser().parse_args(["--max-nodes", "7", "--max-json-depth", "9"])
    assert (args.max_nodes, args.max_json_depth, args.max_links) == (7, 9, 2_000)


# -- fault hooks ------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["duration", "slow-poll", "slow-submit", "retry-after"])
async def test_a_fault_header_asks_for_at_most_max_fault_seconds(
    client: httpx.AsyncClient, fault: str
) -> None:
    body = {"description": "Search the web for cat news and email it to me@example.com"}
    too_long = {"X-Reference-Fault": f"{fault}=3600.5"}
    answer = await client.post(DECOMPOSE, json=body, headers=too_long)
    assert answer.status_code == 400
    message = answer.json()["errors"]["X-Reference-Fault"]
    assert message == f"fault '{fault}': at most 3600 seconds (max_fault_seconds), not 3600.5"
    if fault != "slow-submit":  # the bound itself is accepted (not waited for here)
        at_bound = {"X-Reference-Fault": f"{fault}=3600"}
        assert (await client.post(DECOMPOSE, json=body, headers=at_bound)).status_code == 202


async def test_held_requests_do_not_hold_the_event_loop(client: httpx.AsyncClient) -> None:
    """A slow submit, and a long-poll on a job of an hour, wait; other requests go on."""
    body = {"description": "Search the web for cat news and email it to me@example.com"}
    slow = asyncio.create_task(
        client.post(DECOMPOSE, json=body, headers={"X-Reference-Fault": "slow-submit=0.5"})
    )
    hour = {"X-Reference-Fault": "duration=3600"}
    long_job = await client.post(DECOMPOSE, json=body, headers=hour)
    assert long_job.status_code == 202
    poll = asyncio.create_task(
        client.get(f"/api/jobs/{long_job.json()['job_id']}", params={"wait": 0.5})
    )
    assert (await client.get("/health")).status_code == 200
    assert not slow.done() and not poll.done(), "answered while both were held"
    assert (await slow).status_code == 202
    assert (await poll).json()["status"] in {"queued", "running"}


async def test_concurrent_submits_with_one_key_make_one_job(
    client: httpx.AsyncClient, app: ReferenceApp
) -> None:
    """The agent is worked out off the event loop; a twin that got in meanwhile is found."""
    body = update_body(make_agent(300, 1_000), "add a step to translate the results into French")
    headers = {"Idempotency-Key": "job-9:1"}
    submits = (client.post(UPDATE, json=body, headers=headers) for _ in range(4))
    answers = await asyncio.gather(*submits)
    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.json()["job_id"] for answer in answers}) == 1
    assert app.stats.jobs_created == 1


# -- the linear matchers find what the plain patterns found ------------------------------------

WHITE = [" ", " ", "  ", "\t", "\n", " \n", "", "\xa0"]


def random_texts(words: list[str], *, seed: int, count: int = 3_000) -> list[str]:
    """Texts of ``words`` between white space, with runs of it (an empty word)."""
    rng = random.Random(seed)
    words = [*words, ""]
    texts = []
    for _ in range(count):
        parts = [rng.choice(WHITE) + rng.choice(words) for _ in range(rng.randint(0, 8))]
        texts.append("".join(parts) + rng.choice([*WHITE, "'", '"', "'\n", "."]))
    return texts


def first_group(pattern: str, flags: int = 0) -> Callable[[str], str | None]:
    compiled = re.compile(pattern, flags)
    return lambda text: (match := compiled.search(text)) and match.group(1)


PLAIN_LIST = re.compile(
    r"\b(extract\w*|pull out|collect|including|such as|like|with|fields?)\s+"
    r"((?:the\s+)?[\w-]+(?:\s[\w-]+)?(?:,\s*[\w-]+(?:\s[\w-]+)?)*,?\s+and\s+[\w-]+)",
    re.IGNORECASE,
)
PLAIN_CHANGE = re.compile(r"(?:change|set|update|make)\s+(.+?)\s+(?:to|=|as)\s+(.+)", re.I)
PLAIN_CLAUSE_SPLIT = re.compile(
    rf"(?<=[.!?;])\s+|;\s*|,?\s+and then\s+|,?\s+and\s+(?=(?:{_EDIT_VERBS})\b)", re.IGNORECASE
)


def new_change(text: str) -> tuple[str, str] | None:
    match = _CHANGE.fullmatch(text)
    if match is None:
        return None
    return match.group(1, 2) if match.group(1) is not None else match.group(3, 4)


def plain_change(text: str) -> tuple[str, str] | None:
    match = PLAIN_CHANGE.fullmatch(text)
    return match.group(1, 2) if match else None


MATCHERS: dict[str, tuple[list[str], Callable[[str], object], Callable[[str], object]]] = {
    "lists": (
        ["extract", "with", "like", "such as", "fields", "the", "a", "b c", "and", ",", "x-y"],
        lambda text: PLAIN_LIST.sub(lambda m: f"{m.group(1)} <{m.group(2)}>", text),
        lambda text: _hide_lists(text, lambda piece: f"<{piece}>"),
    ),
    "extract": (
        ["extract", "Extracting", "the", "from", "fromage", "x", "a b", "theory", ","],
        first_group(r"\bextract\w*\s+(?:the\s+)?(.+?)(?:\s+from\b|$)", re.IGNORECASE),
        _extract_target,
    ),
    "contains": (
        ["contains", "mentions", "contain", "x", "a-b", "'", '"', "!", "_", "1"],
        first_group(r"\b(?:contains?|mentions?)\s+[\"']?([\w -]+?)[\"']?$"),
        _contained,
    ),
    "channel": (
        ["channel", "Channel", "a", "-", "a-b", "_x", "the", "channels", "x1"],
        first_group(r"\b([a-z0-9][\w-]*) channel\b", re.IGNORECASE),
        _word_before_channel,
    ),
    "emails": (
        ["a", "b.c", "@", "x@y.z", "a+b", "-", "@q.r.s", ".", "x@y"],
        lambda text: re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text),
        lambda text: [match.group(0) for match in email_matches(text)],
    ),
    "change": (
        ["to", "as", "=", "x", "the subject", "tox", "ast", "change", "set"],
        lambda text: plain_change("change" + text),
        lambda text: new_change("change" + text),
    ),
    "clauses": (
        ["and", "and then", "add", "remove", "x", ",", ";", ".", "set"],
        PLAIN_CLAUSE_SPLIT.split,
        _CLAUSE_SPLIT.split,
    ),
}


@pytest.mark.parametrize("name", sorted(MATCHERS))
def test_linear_matchers_find_what_the_plain_patterns_found(name: str) -> None:
    words, plain, linear = MATCHERS[name]
    for text in random_texts(words, seed=sorted(MATCHERS).index(name)):
        assert linear(text) == plain(text), text


def test_a_url_holding_its_own_placeholder_is_put_back_once() -> None:
    """Restoring used to repeat until no placeholder was left: for ever, for this goal."""
    goal = "search http://x\x000\x00y and mail a@b.com about \x009\x00"
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(restore(*protect(goal))), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert result == [goal]
