"""What the reference service generates, through its HTTP API, from real goal text."""

from __future__ import annotations

from typing import Any

import pytest

from agent_generator.reference.catalogue import BLOCKS, block_by_id, block_by_name
from agent_generator.reference.extract import cron_from_text

DECOMPOSE = "/api/decompose-description"
GENERATE = "/api/generate-agent"
UPDATE = "/api/update-agent"
CUSTOMIZE = "/api/template-modification"

NEWS_GOAL = (
    "Every weekday at 8am, search the web for the latest news about electric cars, "
    "summarise the top 5 articles in bullet points and email the summary to ana@example.com"
)


def assert_consistent(agent: dict[str, Any]) -> None:
    """The protocol's AgentJSON shape, and links that join real fields of real nodes."""
    assert set(agent) >= {"id", "version", "is_active", "name", "description", "nodes", "links"}
    nodes = {node["id"]: node for node in agent["nodes"]}
    assert len(nodes) == len(agent["nodes"]), "node ids are unique"
    for index, node in enumerate(agent["nodes"]):
        block = block_by_id(node["block_id"])
        assert block is not None, node
        assert set(node["input_default"]) <= set(block.inputs), (block.name, node)
        assert node["metadata"]["position"]["x"] == index * 300
    for link in agent["links"]:
        assert set(link) == {"id", "source_id", "sink_id", "source_name", "sink_name", "is_static"}
        source, sink = nodes[link["source_id"]], nodes[link["sink_id"]]
        assert link["source_name"] in block_by_id(source["block_id"]).outputs
        assert link["sink_name"] in block_by_id(sink["block_id"]).inputs
    assert len({link["id"] for link in agent["links"]}) == len(agent["links"])


def block_names(agent: dict[str, Any]) -> list[str]:
    return [block_by_id(node["block_id"]).name for node in agent["nodes"]]


def chain(agent: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    names = {node["id"]: block_by_id(node["block_id"]).name for node in agent["nodes"]}
    return [
        (names[l["source_id"]], l["source_name"], names[l["sink_id"]], l["sink_name"])
        for l in agent["links"]  # noqa: E741
    ]


async def decompose(run_job, goal: str) -> dict[str, Any]:
    job = await run_job(DECOMPOSE, {"description": goal})
    assert job["status"] == "completed", job
    return job["result"]


async def generate(run_job, instructions: dict[str, Any]) -> dict[str, Any]:
    job = await run_job(GENERATE, {"instructions": instructions})
    assert job["status"] == "completed", job
    assert job["result"]["success"] is True
    agent = job["result"]["agent_json"]
    assert_consistent(agent)
    return agent


# --- decompose -----------------------------------------------------------------------------


async def test_decompose_into_ordered_steps_with_blocks(run_job) -> None:
    result = await decompose(run_job, NEWS_GOAL)
    assert result["type"] == "instructions"
    assert [step["block_name"] for step in result["steps"]] == [
        "Schedule",
        "Web search",
        "Summarise text",
        "Send email",
    ]
    assert result["steps"][1]["description"] == (
        "Search the web for the latest news about electric cars"
    )
    assert result["steps"][3]["action"] == "send"
    assert all(block_by_name(step["block_name"]) for step in result["steps"])


@pytest.mark.parametrize(
    ("goal", "blocks"),
    [
        (
            "When a webhook arrives, extract the name, email and company from the payload, "
            "then save them to https://sheets.example.com/leads",
            ["Webhook trigger", "Extract data", "Write spreadsheet"],
        ),
        (
            "Fetch https://shop.example.com/item/42 every hour. If the price drops below 50, "
            "email me at bob@example.com",
            ["Schedule", "Fetch URL", "Condition", "Send email"],
        ),
        (
            "Read the RSS feed https://blog.example.com/feed.xml daily, translate the new posts "
            "into Spanish and post them to #news on Slack",
            ["Schedule", "Read RSS feed", "Translate text", "Post to Slack"],
        ),
    ],
)
async def test_decompose_maps_steps_by_keywords(run_job, goal: str, blocks: list[str]) -> None:
    result = await decompose(run_job, goal)
    assert result["type"] == "instructions", result
    assert [step["block_name"] for step in result["steps"]] == blocks


async def test_detail_without_a_block_stays_with_its_step(run_job) -> None:
    goal = (
        "Read the spreadsheet https://sheets.example.com/feedback, summarise the answers, "
        "focusing on complaints, then post it to the #support channel"
    )
    result = await decompose(run_job, goal)
    assert [step["description"] for step in result["steps"]] == [
        "Read the spreadsheet https://sheets.example.com/feedback",
        "Summarise the answers, focusing on complaints",
        "Post it to the #support channel",
    ]


@pytest.mark.parametrize("goal", ["help me", "make me a marketing bot please", "do stuff"])
async def test_vague_goal(run_job, goal: str) -> None:
    result = await decompose(run_job, goal)
    assert result["type"] == "vague_goal"
    assert set(result) == {"type", "suggested_goal"}
    suggestion = await decompose(run_job, result["suggested_goal"])
    assert suggestion["type"] == "instructions", "the suggestion is a goal that works"


async def test_vague_goal_suggestion_keeps_the_topic(run_job) -> None:
    result = await decompose(run_job, "I want marketing insights")
    assert result["type"] == "vague_goal"
    assert "marketing insights" in result["suggested_goal"]


async def test_goal_with_words_but_no_block_is_vague(run_job) -> None:
    result = await decompose(run_job, "I would love purple elephants dancing under moonlight")
    assert result["type"] == "vague_goal"


@pytest.mark.parametrize(
    ("goal", "reason"),
    [
        ("Predict the winning lottery numbers for Saturday and email them to me", "random"),
        ("Build an agent that lets me time travel to last week and fix my mistakes", "time"),
        ("Read my boss's mind every morning and tell me what he thinks of me", "think"),
        ("Hack into my neighbour's wifi router and send me the password", "illegal"),
    ],
)
async def test_unachievable_goal(run_job, goal: str, reason: str) -> None:
    result = await decompose(run_job, goal)
    assert result["type"] == "unachievable_goal"
    assert reason in result["reason"]
    suggestion = await decompose(run_job, result["suggested_goal"])
    assert suggestion["type"] == "instructions", suggestion


@pytest.mark.parametrize(
    ("goal", "keyword"),
    [
        ("Search the web for AI news every morning and email it to me", "recipient_email"),
        (
            "Regularly check the RSS feed https://blog.example.com/feed.xml and email new "
            "posts to me@example.com",
            "schedule",
        ),
        ("Search the web for new AI startups daily and post them to Slack", "slack_channel"),
        ("Fetch https://example.com/news daily, translate it and email me@example.com", None),
        ("Every Monday at 9am, scrape the web page and email it to me@example.com", "url"),
    ],
)
async def test_clarifying_questions_for_missing_details(
    run_job, goal: str, keyword: str | None
) -> None:
    result = await decompose(run_job, goal)
    assert result["type"] == "clarifying_questions", result
    keywords = [question["keyword"] for question in result["questions"]]
    assert keywords == [keyword or "target_language"]
    question = result["questions"][0]
    assert question["question"].endswith("?")
    assert question["example"]


async def test_answering_the_questions_gives_instructions(run_job) -> None:
    goal = "Search the web for AI news every morning and email it to me"
    assert (await decompose(run_job, goal))["type"] == "clarifying_questions"
    result = await decompose(run_job, goal + " at me@example.com")
    assert result["type"] == "instructions"


# --- generate ------------------------------------------------------------------------------


async def test_generate_from_decomposed_steps(run_job) -> None:
    steps = (await decompose(run_job, NEWS_GOAL))["steps"]
    agent = await generate(run_job, {"steps": steps})
    assert block_names(agent) == ["Schedule", "Web search", "Summarise text", "Send email"]
    assert chain(agent) == [
        ("Schedule", "message", "Web search", "query"),
        ("Web search", "results", "Summarise text", "text"),
        ("Summarise text", "summary", "Send email", "body"),
    ]
    schedule, search, summarise, email = (node["input_default"] for node in agent["nodes"])
    assert schedule["cron"] == "0 8 * * 1-5"
    assert search == {"query": "news about electric cars", "max_results": 5}
    assert summarise["style"] == "bullet points"
    assert email["to"] == "ana@example.com"
    assert email["subject"] == "Update: news about electric cars"
    assert agent["name"] == "Search the web, summarise and email"
    assert agent["version"] == 1
    assert agent["is_active"] is True


async def test_generate_from_a_goal(run_job) -> None:
    agent = await generate(run_job, {"goal": NEWS_GOAL})
    assert block_names(agent) == ["Schedule", "Web search", "Summarise text", "Send email"]
    assert agent["description"] == NEWS_GOAL


async def test_generate_is_deterministic(run_job) -> None:
    first = await generate(run_job, {"goal": NEWS_GOAL})
    second = await generate(run_job, {"goal": NEWS_GOAL})
    assert first == second


async def test_generate_with_unknown_block_names_falls_back_to_keywords(run_job) -> None:
    steps = [
        {"description": "Look up flights to Lisbon", "block_name": "Flight finder"},
        {"description": "Write a short poem about the cheapest one"},
        {"description": "Post it to #travel on Slack"},
    ]
    agent = await generate(run_job, {"steps": steps})
    assert block_names(agent) == ["Web search", "Generate text", "Post to Slack"]
    assert agent["nodes"][2]["input_default"] == {"channel": "#travel"}


@pytest.mark.parametrize(
    ("goal", "error_type"),
    [
        ("help me", "vague_goal"),
        ("Predict the lottery numbers", "unachievable_goal"),
        ("Search the web for AI news and email it to me", "needs_input"),
    ],
)
async def test_generate_from_a_goal_that_does_not_decompose_fails(
    run_job, goal: str, error_type: str
) -> None:
    job = await run_job(GENERATE, {"instructions": {"goal": goal}})
    assert job["status"] == "failed"
    assert job["error_type"] == error_type
    assert job["error"]


async def test_every_block_can_be_generated_and_linked(run_job) -> None:
    steps = [{"description": block.description, "block_name": block.name} for block in BLOCKS]
    agent = await generate(run_job, {"steps": steps})
    assert block_names(agent) == [block.name for block in BLOCKS]


# --- update and customise ------------------------------------------------------------------


@pytest.fixture
async def news_agent(run_job) -> dict[str, Any]:
    return await generate(run_job, {"goal": NEWS_GOAL})


async def update(run_job, agent: dict[str, Any], request: str) -> dict[str, Any]:
    job = await run_job(UPDATE, {"update_request": request, "current_agent_json": agent})
    assert job["status"] == "completed", job
    return job["result"]


async def test_update_adds_a_step_before_the_output(run_job, news_agent) -> None:
    result = await update(run_job, news_agent, "Add a step to translate the summary into French")
    agent = result["agent_json"]
    assert_consistent(agent)
    assert block_names(agent) == [
        "Schedule",
        "Web search",
        "Summarise text",
        "Translate text",
        "Send email",
    ]
    assert ("Summarise text", "summary", "Translate text", "text") in chain(agent)
    assert ("Translate text", "translated_text", "Send email", "body") in chain(agent)
    assert ("Summarise text", "summary", "Send email", "body") not in chain(agent)
    assert agent["nodes"][3]["input_default"] == {"target_language": "French"}
    old_ids = [node["id"] for node in news_agent["nodes"]]
    assert [node["id"] for node in agent["nodes"] if node["id"] in old_ids] == old_ids
    assert agent["id"] == news_agent["id"]
    assert agent["version"] == news_agent["version"] + 1


async def test_update_adds_a_step_where_asked(run_job, news_agent) -> None:
    request = "add a step to store the results after the web search step"
    agent = (await update(run_job, news_agent, request))["agent_json"]
    assert_consistent(agent)
    assert block_names(agent)[2] == "Store value"


async def test_update_removes_a_step_and_joins_its_neighbours(run_job, news_agent) -> None:
    agent = (await update(run_job, news_agent, "remove the summarise step"))["agent_json"]
    assert_consistent(agent)
    assert block_names(agent) == ["Schedule", "Web search", "Send email"]
    assert chain(agent) == [
        ("Schedule", "message", "Web search", "query"),
        ("Web search", "results", "Send email", "body"),
    ]


async def test_update_changes_fields(run_job, news_agent) -> None:
    request = (
        "Change the subject to 'Weekly EV digest' and set the schedule to every day at 7am. "
        "Set the recipient to bo@example.com and rename the agent to EV news"
    )
    agent = (await update(run_job, news_agent, request))["agent_json"]
    assert_consistent(agent)
    schedule, _, _, email = (node["input_default"] for node in agent["nodes"])
    assert email["subject"] == "Weekly EV digest"
    assert email["to"] == "bo@example.com"
    assert schedule["cron"] == "0 7 * * *"
    assert agent["name"] == "EV news"
    assert [n["id"] for n in agent["nodes"]] == [n["id"] for n in news_agent["nodes"]]
    assert agent["links"] == news_agent["links"]


@pytest.mark.parametrize(
    "request_text", ["make it better", "add some magic", "change the colour to blue"]
)
async def test_update_that_cannot_be_mapped_asks(run_job, news_agent, request_text) -> None:
    result = await update(run_job, news_agent, request_text)
    assert result["type"] == "clarifying_questions"
    assert "agent_json" not in result
    question = result["questions"][0]
    assert question["keyword"] == "change_request"
    assert request_text in question["question"]


async def test_customise_a_template_gives_a_new_agent(run_job, news_agent) -> None:
    body = {
        "template_agent_json": news_agent,
        "modification_request": "replace nothing; add a step to post the summary to #cars on Slack",
    }
    job = await run_job(CUSTOMIZE, body)
    result = job["result"]
    assert result["type"] == "clarifying_questions", "'replace nothing' is not understood"
    body["modification_request"] = "add a step to post the summary to #cars on Slack"
    agent = (await run_job(CUSTOMIZE, body))["result"]["agent_json"]
    assert_consistent(agent)
    assert block_names(agent)[-1] == "Post to Slack"
    assert agent["nodes"][-1]["input_default"] == {"channel": "#cars"}
    assert agent["id"] != news_agent["id"]
    assert agent["version"] == 1


async def test_customise_keeps_nodes_of_unknown_blocks(run_job) -> None:
    template = {
        "id": "tpl",
        "version": 3,
        "name": "Template",
        "description": "a template",
        "nodes": [
            {"id": "n1", "block_id": "not-ours", "input_default": {"x": 1}, "metadata": {}},
            {"id": "n2", "block_id": block_by_name("Send email").id, "input_default": {}},
        ],
        "links": [
            {
                "id": "l1",
                "source_id": "n1",
                "sink_id": "n2",
                "source_name": "output",
                "sink_name": "body",
                "is_static": False,
            }
        ],
    }
    body = {"template_agent_json": template, "modification_request": "set the recipient to a@b.com"}
    agent = (await run_job(CUSTOMIZE, body))["result"]["agent_json"]
    assert agent["nodes"][0] == template["nodes"][0]
    assert agent["nodes"][1]["input_default"] == {"to": "a@b.com"}
    assert agent["links"] == template["links"]


async def test_update_adds_a_trigger_at_the_start(run_job) -> None:
    agent = await generate(run_job, {"goal": "Search the web for cats and email them to a@b.com"})
    request = "add a schedule every Monday at 9:30"
    updated = (await update(run_job, agent, request))["agent_json"]
    assert_consistent(updated)
    assert block_names(updated) == ["Schedule", "Web search", "Send email"]
    assert updated["nodes"][0]["input_default"]["cron"] == "30 9 * * 1"
    assert ("Schedule", "message", "Web search", "query") in chain(updated)


@pytest.mark.parametrize(
    ("text", "cron"),
    [
        ("every weekday at 8am", "0 8 * * 1-5"),
        ("every Monday and Friday at 5:15 pm", "15 17 * * 1,5"),
        ("daily at 18:45", "45 18 * * *"),
        ("every morning", "0 8 * * *"),
        ("weekly", "0 9 * * 1"),
        ("monthly at noon", "0 12 1 * *"),
        ("hourly", "0 * * * *"),
        ("every 15 minutes", "*/15 * * * *"),
        ("every 6 hours", "0 */6 * * *"),
        ("at weekends at 10am", "0 10 * * 0,6"),
        ("regularly", None),
        ("now and then", None),
    ],
)
def test_schedules_become_cron(text: str, cron: str | None) -> None:
    assert cron_from_text(text) == cron
