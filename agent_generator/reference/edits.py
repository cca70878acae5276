"""Apply a change request written by a person to an existing agent (update, customise).

Understood requests, one or more per text (split on sentences, ";", "and then", and "and"
before another edit verb):

- "add a step to translate the summary into French [after|before the summarise step]"
  inserts a node (by default before the first output step such as e-mail or Slack, at
  the start for a trigger, else at the end) and relinks its neighbours through it;
- "remove the Slack step" drops the best-matching node and joins its neighbours;
- "change|set the subject to Weekly digest" sets an input of the node that has it
  ("the schedule to every day at 7am" becomes a cron expression);
- "rename the agent to X" renames it.

A request it cannot map answers clarifying questions instead. Untouched nodes keep their
ids (and inputs); positions are laid out again after an insertion or removal.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .agents import build_node, layout, make_link, stable_id
from .catalogue import BLOCKS, Block, block_by_id
from .decompose import match_block
from .extract import cron_from_text, language_in, slack_channel_in
from .text import keyword_score

__all__ = ["UnclearRequestError", "apply_request", "unclear_questions"]

_EDIT_VERBS = r"add|insert|include|also|remove|delete|drop|change|set|update|rename|make"
_CLAUSE_SPLIT = re.compile(
    rf"(?<=[.!?;])\s+|;\s*|,?\s+and then\s+|,?\s+and\s+(?=(?:{_EDIT_VERBS})\b)", re.IGNORECASE
)
_FIELD_SYNONYMS = {
    "recipient": "to",
    "recipients": "to",
    "email address": "to",
    "address": "to",
    "email subject": "subject",
    "title": "subject",
    "schedule": "cron",
    "time": "cron",
    "frequency": "cron",
    "search query": "query",
    "search term": "query",
    "search terms": "query",
    "topic": "query",
    "language": "target_language",
    "target language": "target_language",
    "slack channel": "channel",
    "number of results": "max_results",
    "results": "max_results",
    "feed": "feed_url",
    "feed url": "feed_url",
    "spreadsheet": "spreadsheet_url",
    "sheet": "spreadsheet_url",
    "length": "max_words",
    "word limit": "max_words",
}


class UnclearRequestError(Exception):
    """A clause of the request maps to no edit; ``clause`` is what was not understood."""

    def __init__(self, clause: str) -> None:
        super().__init__(clause)
        self.clause = clause


def _block_of(node: dict[str, Any]) -> Block | None:
    return block_by_id(node.get("block_id"))


def _node_score(node: dict[str, Any], text: str) -> int:
    block = _block_of(node)
    if block is None:
        return 0
    names = (block.name.lower(), *(w for w in block.name.lower().split() if len(w) > 2))
    return keyword_score(text=text, keywords=(*block.keywords, *names))


def _find_node(nodes: list[dict[str, Any]], text: str) -> int | None:
    scores = [_node_score(node, text) for node in nodes]
    if not scores or max(scores) == 0:
        return None
    return scores.index(max(scores))


def _insert_index(nodes: list[dict[str, Any]], block: Block, text: str) -> tuple[int, str]:
    """Where a new ``block`` goes, and ``text`` with the position phrase removed."""
    if match := re.search(r"\b(before|after)\s+(?:the\s+)?(.+?)(?:\s+(?:step|node|block))?$", text):
        index = _find_node(nodes, match.group(2))
        if index is not None:
            rest = text[: match.start()].strip()
            return (index if match.group(1) == "before" else index + 1), rest
    if match := re.search(r"\bat the (start|beginning|end)$", text):
        rest = text[: match.start()].strip()
        return (len(nodes) if match.group(1) == "end" else 0), rest
    if block.is_trigger:
        return 0, text
    if "output" not in block.categories:
        for index, node in enumerate(nodes):
            existing = _block_of(node)
            if existing is not None and "output" in existing.categories:
                return index, text
    return len(nodes), text


def _relink_insert(agent: dict[str, Any], index: int) -> None:
    nodes, links = agent["nodes"], agent["links"]
    new = nodes[index]
    new_block = _block_of(new)
    assert new_block is not None
    before = nodes[index - 1] if index > 0 else None
    after = nodes[index + 1] if index + 1 < len(nodes) else None
    old = [
        link
        for link in links
        if before is not None
        and after is not None
        and link.get("source_id") == before["id"]
        and link.get("sink_id") == after["id"]
    ]
    agent["links"] = [link for link in links if link not in old]
    if before is not None and new_block.primary_input is not None:
        before_block = _block_of(before)
        source_name = old[0]["source_name"] if old else None
        source_name = source_name or (before_block.primary_output if before_block else None)
        if source_name:
            agent["links"].append(
                make_link(
                    source_id=before["id"],
                    source_name=source_name,
                    sink_id=new["id"],
                    sink_name=new_block.primary_input,
                )
            )
    if after is not None:
        after_block = _block_of(after)
        sink_name = old[0]["sink_name"] if old else None
        sink_name = sink_name or (after_block.primary_input if after_block else None)
        if sink_name:
            agent["links"].append(
                make_link(
                    source_id=new["id"],
                    source_name=new_block.primary_output,
                    sink_id=after["id"],
                    sink_name=sink_name,
                )
            )


def _remove(agent: dict[str, Any], index: int) -> None:
    node = agent["nodes"].pop(index)
    incoming = [link for link in agent["links"] if link.get("sink_id") == node["id"]]
    outgoing = [link for link in agent["links"] if link.get("source_id") == node["id"]]
    kept = [link for link in agent["links"] if link not in incoming and link not in outgoing]
    existing = {
        (link.get("source_id"), link.get("sink_id"), link.get("sink_name")) for link in kept
    }
    for into in incoming:
        for out in outgoing:
            key = (into["source_id"], out["sink_id"], out["sink_name"])
            if key not in existing:
                existing.add(key)
                kept.append(
                    make_link(
                        source_id=into["source_id"],
                        source_name=into["source_name"],
                        sink_id=out["sink_id"],
                        sink_name=out["sink_name"],
                    )
                )
    agent["links"] = kept


def _field_value(field: str, value: str) -> object:
    value = value.strip().strip("\"'\u201c\u201d\u2018\u2019").strip()
    if field == "cron":
        return value if re.fullmatch(r"[\d*/,-]+( [\d*/,-]+){4}", value) else cron_from_text(value)
    if field.startswith("max_") and value.isdigit():
        return int(value)
    if field == "target_language":
        return language_in(value) or value
    if field == "channel":
        return slack_channel_in(value) or ("#" + value.lstrip("#"))
    return value


def _set_field(agent: dict[str, Any], phrase: str, raw_value: str) -> bool:
    phrase = re.sub(r"^(?:the|its|my|our)\s+", "", phrase.strip().lower())
    field = _FIELD_SYNONYMS.get(phrase, phrase.replace(" ", "_"))
    candidates = []
    for index, node in enumerate(agent["nodes"]):
        block = _block_of(node)
        fields = set(block.inputs if block else ()) | set(node.get("input_default") or {})
        if field in fields:
            candidates.append(index)
    if not candidates:
        # "the email subject": the last word names the field, the rest the node.
        words = phrase.split()
        if len(words) > 1:
            hint, last = " ".join(words[:-1]), words[-1]
            found = _find_node(agent["nodes"], hint)
            if found is not None:
                node = agent["nodes"][found]
                block = _block_of(node)
                field = _FIELD_SYNONYMS.get(last, last)
                if block is not None and field in block.inputs:
                    candidates = [found]
    value = _field_value(field, raw_value) if candidates else None
    if value is None:
        return False
    best = max(candidates, key=lambda i: _node_score(agent["nodes"][i], phrase))
    agent["nodes"][best].setdefault("input_default", {})[field] = value
    return True


def _apply_clause(agent: dict[str, Any], clause: str, *, key: object) -> bool:
    """Apply one clause to ``agent`` in place; False when it is not understood."""
    text = clause.strip(" .,!").lower()
    if match := re.fullmatch(
        r"(?:rename|call)\s+(?:the agent|it|this agent)\s+(?:to\s+)?(.+)", text
    ):
        start = clause.lower().index(match.group(1))
        agent["name"] = clause[start : start + len(match.group(1))].strip("\"'“” ")
        return True
    if match := re.fullmatch(r"(?:remove|delete|drop|get rid of|skip)\s+(.+)", text):
        index = _find_node(agent["nodes"], match.group(1))
        if index is None:
            return False
        _remove(agent, index)
        return True
    if match := re.fullmatch(
        r"(?:change|set|update|make)\s+(.+?)\s+(?:to|=|as)\s+(.+)", clause.strip(" .!"), re.I
    ):
        return _set_field(agent, match.group(1), match.group(2))
    if match := re.fullmatch(
        r"(?:add|insert|include|also)\s+(?:a|an|another|one more)?\s*(?:new\s+)?"
        r"(?:(?:step|node|block)\s+)?(?:to|that|which)?\s*(.+)",
        text,
    ):
        block = match_block(match.group(1))
        if block is None:
            return False
        index, what = _insert_index(agent["nodes"], block, match.group(1))
        node = build_node(
            agent_id=agent["id"], key=key, block=block, text=what, goal=agent["description"]
        )
        agent["nodes"].insert(index, node)
        _relink_insert(agent, index)
        return True
    return False


def apply_request(*, agent: dict[str, Any], request: str, new_identity: bool) -> dict[str, Any]:
    """A changed copy of ``agent``; raises :class:`UnclearRequestError` if a clause is unclear.

    ``new_identity`` (template modification) gives the result a new id and version 1;
    otherwise (update) the id stays and the version goes up by one.
    """
    changed = copy.deepcopy(agent)
    changed.setdefault("name", "Agent")
    changed.setdefault("description", "")
    changed.setdefault("is_active", True)
    changed["nodes"] = list(changed.get("nodes") or [])
    changed["links"] = list(changed.get("links") or [])
    old_id = str(changed.get("id") or stable_id("agent", agent))
    changed["id"] = stable_id("customised", old_id, request) if new_identity else old_id
    version = changed.get("version")
    changed["version"] = 1 if new_identity or not isinstance(version, int) else version + 1
    count = len(changed["nodes"])
    for number, clause in enumerate(c for c in _CLAUSE_SPLIT.split(request) if c.strip()):
        if not _apply_clause(changed, clause, key=(request, number)):
            raise UnclearRequestError(clause.strip())
    if len(changed["nodes"]) != count:
        layout(changed["nodes"])
    return changed


def unclear_questions(clause: str) -> dict[str, Any]:
    """The clarifying-questions result for a clause that maps to no edit."""
    examples = ", ".join(f"“{b.name}”" for b in BLOCKS[3:7])
    return {
        "type": "clarifying_questions",
        "questions": [
            {
                "question": f"I could not tell how to apply “{clause}”. Which step should be "
                f"added, removed or changed (for example {examples})?",
                "keyword": "change_request",
                "example": "add a step to translate the summary into French",
            }
        ],
    }
