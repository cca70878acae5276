"""The reference service's block catalogue.

A block is one thing an agent can do (search the web, send an email, ...). Agents are
graphs of nodes; every node names a block by its stable id and links connect an output
field of one node to an input field of another.

Besides what ``GET /api/blocks`` shows (``id``, ``name``, ``description``, ``categories``,
``inputs``, ``outputs``), each block carries what the rule-based generator needs:

- ``keywords``: words and phrases that, found in a step's text, point to this block (a
  trailing ``*`` marks a stem: ``summar*``; see :mod:`agent_generator.reference.text`);
- ``primary_input`` / ``primary_output``: the fields a link uses when the block sits
  in a chain (``primary_input`` is None for blocks that start a chain, the triggers);
- ``verb``: a short label used to name agents ("Search the web, summarise and email").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any

__all__ = ["BLOCKS", "Block", "block_by_id", "block_by_name", "blocks_payload", "known_block"]

_NAMESPACE = uuid.UUID("6f1d3c2a-5b8e-4e7a-9a41-2c0f7d9e8b10")


@dataclass(frozen=True, kw_only=True)
class Block:
    """One catalogue entry; ``id`` is a UUID derived from the name, so it never changes."""

    name: str
    description: str
    categories: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    keywords: tuple[str, ...]
    primary_input: str | None
    primary_output: str
    verb: str
    action: str

    @cached_property
    def id(self) -> str:
        return str(uuid.uuid5(_NAMESPACE, self.name))

    @property
    def is_trigger(self) -> bool:
        return self.primary_input is None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "categories": list(self.categories),
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
        }


BLOCKS: tuple[Block, ...] = (
    Block(
        name="Manual trigger",
        description="Starts the agent when a person runs it, passing on the value they type.",
        categories=("trigger", "input"),
        inputs=("name", "value"),
        outputs=("value",),
        keywords=("manual", "on demand", "when i run", "when i click", "when i ask", "button"),
        primary_input=None,
        primary_output="value",
        verb="Run on demand",
        action="start",
    ),
    Block(
        name="Schedule",
        description="Starts the agent on a cron schedule and passes on a fixed message.",
        categories=("trigger", "time"),
        inputs=("cron", "timezone", "message"),
        outputs=("message", "triggered_at"),
        keywords=(
            "every",
            "daily",
            "weekly",
            "hourly",
            "monthly",
            "each morning",
            "each day",
            "each week",
            "schedul*",
            "regularly",
            "periodically",
            "recurring",
            "cron",
            "weekday",
        ),
        primary_input=None,
        primary_output="message",
        verb="On a schedule",
        action="schedule",
    ),
    Block(
        name="Webhook trigger",
        description="Starts the agent when an HTTP request arrives at its webhook address.",
        categories=("trigger", "web"),
        inputs=("path",),
        outputs=("payload",),
        keywords=("webhook", "when a request", "incoming request", "form submission"),
        primary_input=None,
        primary_output="payload",
        verb="On a webhook",
        action="listen",
    ),
    Block(
        name="Web search",
        description="Searches the web and returns the top results (title, address, snippet).",
        categories=("search", "web"),
        inputs=("query", "max_results"),
        outputs=("results",),
        keywords=("search*", "look up", "google", "find", "research*", "news", "latest"),
        primary_input="query",
        primary_output="results",
        verb="Search the web",
        action="search",
    ),
    Block(
        name="Fetch URL",
        description="Downloads a web page and returns its readable text.",
        categories=("web",),
        inputs=("url",),
        outputs=("content", "status_code"),
        keywords=("fetch*", "download*", "scrap*", "web page", "webpage", "website", "url"),
        primary_input="url",
        primary_output="content",
        verb="Fetch a page",
        action="fetch",
    ),
    Block(
        name="Read RSS feed",
        description="Reads the newest entries of an RSS or Atom feed.",
        categories=("web", "input"),
        inputs=("feed_url", "max_items"),
        outputs=("entries",),
        keywords=("rss", "atom", "feed", "blog posts", "podcast"),
        primary_input="feed_url",
        primary_output="entries",
        verb="Read a feed",
        action="read",
    ),
    Block(
        name="HTTP request",
        description="Calls an HTTP API and returns the decoded response.",
        categories=("web", "developer"),
        inputs=("url", "method", "body"),
        outputs=("response", "status_code"),
        keywords=("api", "http request", "endpoint", "rest", "call the"),
        primary_input="body",
        primary_output="response",
        verb="Call an API",
        action="request",
    ),
    Block(
        name="Read spreadsheet",
        description="Reads the rows of a spreadsheet (Google Sheets or CSV).",
        categories=("data", "input"),
        inputs=("spreadsheet_url", "sheet_name"),
        outputs=("rows",),
        keywords=("import", "spreadsheet", "sheet", "csv", "rows"),
        primary_input="spreadsheet_url",
        primary_output="rows",
        verb="Read a spreadsheet",
        action="read",
    ),
    Block(
        name="Summarise text",
        description="Summarises text in a few sentences or bullet points.",
        categories=("text", "ai"),
        inputs=("text", "max_words", "style"),
        outputs=("summary",),
        keywords=("summar*", "digest", "condense*", "tl;dr", "key points", "recap"),
        primary_input="text",
        primary_output="summary",
        verb="summarise",
        action="summarise",
    ),
    Block(
        name="Extract data",
        description="Pulls named fields (prices, dates, names, ...) out of text.",
        categories=("text", "data", "ai"),
        inputs=("text", "fields"),
        outputs=("data",),
        keywords=("extract*", "pull out", "pars*", "price", "figures"),
        primary_input="text",
        primary_output="data",
        verb="extract data",
        action="extract",
    ),
    Block(
        name="Translate text",
        description="Translates text into another language.",
        categories=("text", "ai"),
        inputs=("text", "target_language"),
        outputs=("translated_text",),
        keywords=("translat*", "language"),
        primary_input="text",
        primary_output="translated_text",
        verb="translate",
        action="translate",
    ),
    Block(
        name="Generate text",
        description="Asks a language model to write text from a prompt.",
        categories=("text", "ai"),
        inputs=("prompt", "context"),
        outputs=("response",),
        keywords=("write", "draft", "compose", "generate", "tweet", "caption", "reply", "ideas"),
        primary_input="context",
        primary_output="response",
        verb="write text",
        action="write",
    ),
    Block(
        name="Filter list",
        description="Keeps only the items of a list that match a condition.",
        categories=("data", "logic"),
        inputs=("items", "condition"),
        outputs=("matching_items",),
        keywords=("filter*", "only keep", "keep only", "exclud*", "only the", "only those"),
        primary_input="items",
        primary_output="matching_items",
        verb="filter",
        action="filter",
    ),
    Block(
        name="Condition",
        description="Compares a value and routes it to the yes or the no branch.",
        categories=("logic",),
        inputs=("value", "operator", "compare_to"),
        outputs=("yes", "no"),
        keywords=("if", "unless", "condition", "otherwise", "check whether", "check if"),
        primary_input="value",
        primary_output="yes",
        verb="check a condition",
        action="check",
    ),
    Block(
        name="Format text",
        description="Fills a text template with values, for messages and reports.",
        categories=("text",),
        inputs=("template", "values"),
        outputs=("text",),
        keywords=("format", "template", "report", "table", "markdown"),
        primary_input="values",
        primary_output="text",
        verb="format",
        action="format",
    ),
    Block(
        name="Store value",
        description="Saves a value under a key so later runs can compare against it.",
        categories=("data",),
        inputs=("key", "value"),
        outputs=("stored_value",),
        keywords=("store", "remember", "keep track", "memory", "history"),
        primary_input="value",
        primary_output="stored_value",
        verb="remember",
        action="store",
    ),
    Block(
        name="Write spreadsheet",
        description="Appends rows to a spreadsheet (Google Sheets or CSV).",
        categories=("data", "output"),
        inputs=("spreadsheet_url", "rows"),
        outputs=("row_count",),
        keywords=("save", "append", "record", "log", "write", "spreadsheet", "sheet", "csv"),
        primary_input="rows",
        primary_output="row_count",
        verb="save to a spreadsheet",
        action="write",
    ),
    Block(
        name="Send email",
        description="Sends an email to one or more addresses.",
        categories=("communication", "output"),
        inputs=("to", "subject", "body"),
        outputs=("status",),
        keywords=("email", "e-mail", "mail", "inbox", "newsletter"),
        primary_input="body",
        primary_output="status",
        verb="email",
        action="send",
    ),
    Block(
        name="Post to Slack",
        description="Posts a message to a Slack channel.",
        categories=("communication", "output"),
        inputs=("channel", "message"),
        outputs=("status",),
        keywords=("slack", "channel", "post"),
        primary_input="message",
        primary_output="status",
        verb="post to Slack",
        action="post",
    ),
)

_BY_ID = {block.id: block for block in BLOCKS}
_BY_NAME = {block.name.casefold(): block for block in BLOCKS}


def block_by_id(block_id: object) -> Block | None:
    """The catalogue block with this id, or None (agents may hold blocks we do not know)."""
    return _BY_ID.get(block_id) if isinstance(block_id, str) else None


def block_by_name(name: object) -> Block | None:
    """The catalogue block with this name (case-insensitive), or None."""
    return _BY_NAME.get(name.strip().casefold()) if isinstance(name, str) else None


def known_block(name: str) -> Block:
    """The catalogue block with this name, for a name the code itself holds (a constant, or a
    name a catalogue block gave); one not in the catalogue is a bug and raises ``KeyError``."""
    block = block_by_name(name)
    if block is None:
        raise KeyError(f"no catalogue block is named {name!r}")
    return block


def blocks_payload() -> dict[str, Any]:
    """The body of ``GET /api/blocks``."""
    return {"success": True, "blocks": [block.as_json() for block in BLOCKS]}
