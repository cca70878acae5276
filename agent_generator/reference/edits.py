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

Cost: each change is one pass over the agent (each catalogue block is scored once per
change, not once per node; removing a node joins each distinct source to each distinct
sink once), so a request costs its number of changes times the agent's size, and both are
bounded by :class:`~.limits.Limits`. A change that would make an agent over the limits
raises :class:`~.limits.LimitExceededError` as soon as it gets there. The patterns never
rescan a run of white space from each of its characters, so they are linear in the text.
"""

from __future__ import annotations

import re
from typing import Any

from .agents import build_node, layout, make_link, stable_id
from .catalogue import BLOCKS, Block, block_by_id
from .decompose import match_block
from .extract import cron_from_text, language_in, slack_channel_in
from .limits import DEFAULT_LIMITS, LimitExceededError, Limits, check
from .text import keyword_score

__all__ = ["UnclearRequestError", "apply_request", "request_clauses", "unclear_questions"]

_EDIT_VERBS = r"add|insert|include|also|remove|delete|drop|change|set|update|rename|make"
# "(?<!\s)": a split starts where its white space starts, never inside it (a match from
# inside a run would be a match from its start, found first; trying each inside position
# rescanned the run: quadratic in its length).
_CLAUSE_SPLIT = re.compile(
    rf"(?<=[.!?;])\s+|;\s*|,?(?<!\s)\s+and then\s+|,?(?<!\s)\s+and\s+(?=(?:{_EDIT_VERBS})\b)",
    re.IGNORECASE,
)
# White space before a final "(.+)" in a fullmatch: taken possessively (never given back
# char by char, which is cubic with several such runs in a row) but never the last char of
# the text, which "(.+)" then gets, as it did by backtracking ("rename it \t").
_WS = r"(?:\s(?=[\s\S]))"
_RENAME = re.compile(rf"(?:rename|call){_WS}++(?:the agent|it|this agent){_WS}++(?:to{_WS}++)?(.+)")
_REMOVE = re.compile(rf"(?:remove|delete|drop|get rid of|skip){_WS}++(.+)")
# The field phrase ends where its white space starts. The second branch is the one field
# phrase that is white space itself, which backtracking used to find in "change   to x":
# the last white space character but one of the run that is not a line break (groups 3
# and 4 then); its lookahead first checks what follows the run, so that a run ending the
# wrong way is not given back character by character.
_CHANGE = re.compile(
    rf"(?:change|set|update|make)(?:\s++(.+?)(?<!\s)\s++(?:to|=|as){_WS}++(.+)"
    rf"|(?=\s+(?:to|=|as){_WS}++.+\Z)\s+([^\S\n])\s++(?:to|=|as){_WS}++(.+))",
    re.IGNORECASE,
)
_ADD = re.compile(
    rf"(?:add|insert|include|also){_WS}++(?:a|an|another|one more)?{_WS}*+(?:new{_WS}++)?"
    rf"(?:(?:step|node|block){_WS}++)?(?:to|that|which)?{_WS}*+(.+)"
)
_POSITION = re.compile(r"\b(before|after)\s+(?:the\s+)?(.+?)(?:(?<!\s)\s+(?:step|node|block))?$")
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


def _block_score(block: Block, text: str) -> int:
    names = (block.name.lower(), *(w for w in block.name.lower().split() if len(w) > 2))
    return keyword_score(text=text, keywords=(*block.keywords, *names))


def _node_scores(nodes: list[dict[str, Any]], text: str) -> list[int]:
    """How well ``text`` names each node (0 for a block we do not know).

    A node's score depends only on its block, so each block is scored once.
    """
    by_block: dict[str, int] = {}
    scores = []
    for node in nodes:
        block = _block_of(node)
        if block is None:
            scores.append(0)
            continue
        score = by_block.get(node["block_id"])
        if score is None:
            score = by_block[node["block_id"]] = _block_score(block, text)
        scores.append(score)
    return scores


def _find_node(nodes: list[dict[str, Any]], text: str) -> int | None:
    scores = _node_scores(nodes, text)
    if not scores or max(scores) == 0:
        return None
    return scores.index(max(scores))


def _insert_index(nodes: list[dict[str, Any]], block: Block, text: str) -> tuple[int, str]:
    """Where a new ``block`` goes, and ``text`` with the position phrase removed."""
    if match := _POSITION.search(text):
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
    old: list[dict[str, Any]] = []
    if before is not None and after is not None:
        before_id, after_id = before["id"], after["id"]
        old = [
            link
            for link in links
            if link.get("source_id") == before_id and link.get("sink_id") == after_id
        ]
    # By identity: a link equal to one of ``old`` joins the same two nodes, so is in it.
    dropped = {id(link) for link in old}
    agent["links"] = [link for link in links if id(link) not in dropped]
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


def _remove(agent: dict[str, Any], index: int, *, max_links: int) -> None:
    """Drop node ``index`` and join each of its sources to each of its sinks.

    A new link per distinct (source node, sink node, sink field) not linked already, in the
    order of the links they come from. Only the first link from each source node and the
    first to each sink field can add one (a later one gives only keys already there), so
    the work is the links read plus the links made, and it stops past ``max_links``.
    """
    node = agent["nodes"].pop(index)
    node_id = node["id"]
    incoming: list[dict[str, Any]] = []
    outgoing: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for link in agent["links"]:
        into, out = link.get("sink_id") == node_id, link.get("source_id") == node_id
        if into:
            incoming.append(link)
        if out:
            outgoing.append(link)
        if not into and not out:
            kept.append(link)
    existing = {
        (link.get("source_id"), link.get("sink_id"), link.get("sink_name")) for link in kept
    }
    if incoming and outgoing:
        sources: dict[Any, dict[str, Any]] = {}
        for into in incoming:
            sources.setdefault(into["source_id"], into)
        sinks: dict[tuple[Any, Any], None] = {}
        for out in outgoing:
            sinks.setdefault((out["sink_id"], out["sink_name"]), None)
        for source_id, into in sources.items():
            for sink_id, sink_name in sinks:
                key = (source_id, sink_id, sink_name)
                if key in existing:
                    continue
                existing.add(key)
                kept.append(
                    make_link(
                        source_id=source_id,
                        source_name=into["source_name"],
                        sink_id=sink_id,
                        sink_name=sink_name,
                    )
                )
                if len(kept) > max_links:
                    raise _too_large("links", max_links)
    agent["links"] = kept


def _too_large(limit: str, bound: int) -> LimitExceededError:
    what = f"more than {bound:,} {limit}"
    return LimitExceededError(
        limit=limit, bound=bound, found=None, message=f"The agent this makes would have {what}."
    )


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
    scores = _node_scores(agent["nodes"], phrase)
    best = max(candidates, key=scores.__getitem__)
    agent["nodes"][best].setdefault("input_default", {})[field] = value
    return True


def _apply_clause(agent: dict[str, Any], clause: str, *, key: object, limits: Limits) -> bool:
    """Apply one clause to ``agent`` in place; False when it is not understood."""
    text = clause.strip(" .,!").lower()
    if match := _RENAME.fullmatch(text):
        start = clause.lower().index(match.group(1))
        agent["name"] = clause[start : start + len(match.group(1))].strip("\"'“” ")
        return True
    if match := _REMOVE.fullmatch(text):
        index = _find_node(agent["nodes"], match.group(1))
        if index is None:
            return False
        _remove(agent, index, max_links=limits.links)
        return True
    if match := _CHANGE.fullmatch(clause.strip(" .!")):
        phrase, value = match.group(1, 2) if match.group(1) is not None else match.group(3, 4)
        return _set_field(agent, phrase, value)
    if match := _ADD.fullmatch(text):
        block = match_block(match.group(1))
        if block is None:
            return False
        index, what = _insert_index(agent["nodes"], block, match.group(1))
        node = build_node(
            agent_id=agent["id"], key=key, block=block, text=what, goal=agent["description"]
        )
        agent["nodes"].insert(index, node)
        _relink_insert(agent, index)
        for limit, bound in (("nodes", limits.nodes), ("links", limits.links)):
            if len(agent[limit]) > bound:
                raise _too_large(limit, bound)
        return True
    return False


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON data (what ``copy.deepcopy`` gives it, at a third of the cost:
    no memo, as parsed JSON shares no object)."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


def request_clauses(request: str) -> list[str]:
    """The changes a request asks for, in order (each one clause of its text)."""
    return [clause for clause in _CLAUSE_SPLIT.split(request) if clause.strip()]


def apply_request(
    *, agent: dict[str, Any], request: str, new_identity: bool, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """A changed copy of ``agent``; raises :class:`UnclearRequestError` if a clause is unclear.

    ``new_identity`` (template modification) gives the result a new id and version 1;
    otherwise (update) the id stays and the version goes up by one. More than
    ``limits.edits`` clauses, or a change that would make the agent larger than
    ``limits.nodes`` or ``limits.links``, raise :class:`~.limits.LimitExceededError`.
    """
    clauses = request_clauses(request)
    check(limit="edits", bound=limits.edits, found=len(clauses), field="request")
    changed = _copy_json(agent)
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
    for number, clause in enumerate(clauses):
        if not _apply_clause(changed, clause, key=(request, number), limits=limits):
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
