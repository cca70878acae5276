"""Turn a goal written by a person into ordered steps, rule by rule.

``decompose(description=...)`` answers exactly one of the protocol's decompose results,
checked in this order:

1. ``unachievable_goal``: the goal asks for something no software can do (travel in time,
   predict lottery numbers, read minds, hack into a system, predict the markets);
2. ``vague_goal``: fewer than four meaningful words, or no step maps to a block;
3. ``clarifying_questions``: a step lacks what it needs (an e-mail with no address, a
   schedule with no time or frequency, a Slack post with no channel, a translation with no
   language, a page or feed to read with no address);
4. ``instructions``: the steps, each mapped to a catalogue block.

Steps come from sentences, "then"/"after that", commas and "and" between two things to
do; a clause that maps to no block ("focusing on startups") is kept as detail of the step
before it.

It is linear in the goal's length: pieces of a step are joined once, and what a question
asks of the whole goal (an address, a channel, a language, a URL) is read from it once.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .catalogue import BLOCKS, Block, known_block
from .extract import cron_from_text, language_in, slack_channel_in
from .text import (
    EMAIL_RE,
    URL_RE,
    keyword_score,
    meaningful_words,
    protect,
    restore,
    split_clauses,
)

__all__ = ["Step", "decompose", "match_block", "split_steps"]

SCHEDULE = known_block("Schedule")
_EXAMPLE_GOAL = (
    "Every weekday at 8am, search the web for the latest news about {topic}, summarise "
    "the top 5 articles in bullet points and email the summary to you@example.com"
)

_UNACHIEVABLE: tuple[tuple[str, str, str], ...] = (
    (
        r"\btime[- ]travel|\b(?:go|travel|send \w+) back in time\b",
        "Travelling through time is not something software can do.",
        "Every morning, search the web for what happened on this day in history and "
        "email me a short summary at you@example.com",
    ),
    (
        r"\blottery\b|\bwinning (?:lotto )?numbers\b|\blotto\b",
        "Lottery draws are random, so no agent can predict the winning numbers.",
        "Every Saturday at 9pm, fetch the official draw results page "
        "https://results.example.com/draws and email me the drawn numbers at you@example.com",
    ),
    (
        r"\bread (?:[\w']+ ){0,3}minds?\b|\bmind[- ]read",
        "An agent cannot know what people think; it can only work with what they write.",
        "Every Friday at 4pm, read the answers to our feedback form from "
        "https://sheets.example.com/feedback, summarise them and post the summary to "
        "#team on Slack",
    ),
    (
        r"\bhack\w* into\b|\bbreak into\b|\bsteal\w*\b",
        "Breaking into systems or taking what is not yours is illegal; no agent will do it.",
        "Every hour, fetch the public status page https://status.example.com and post to "
        "#ops on Slack if it mentions an outage",
    ),
    (
        r"\bpredict\w* (?:the )?(?:stock market|future|exact price)|\bguarantee\w* (?:a )?"
        r"(?:profit|return)",
        "Nobody can predict markets or the future reliably, and an agent cannot either.",
        "Every weekday at 8am, search the web for market news about the companies I follow, "
        "summarise it and email the summary to you@example.com",
    ),
)


@dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a goal: the words a person wrote and the block that does it."""

    description: str
    block: Block

    def as_json(self) -> dict[str, str]:
        return {
            "description": self.description,
            "action": self.block.action,
            "block_name": self.block.name,
        }


_FREQUENCY_RE = re.compile(
    r"\b(?:(?:every|each)\s+(?:\d+\s+|other\s+)?(?:minute|hour|day|morning|afternoon|evening|"
    r"night|week|weekday|working day|month|monday|tuesday|wednesday|thursday|friday|saturday|"
    r"sunday)s?|hourly|daily|weekly|monthly|regularly|periodically|on a schedule)"
    r"(?:\s+at\s+(?:\d{1,2}(?::\d{2})?\s*(?:[ap]\.?m\.?)?|noon|midnight))?",
    re.IGNORECASE,
)


def match_block(text: str) -> Block | None:
    """The catalogue block whose keywords fit ``text`` best, or None.

    The first two words count three times: in "email the summary" the verb says what the
    step does, the object ("summary") only what it works on.
    """
    lead = " ".join(text.split()[:2])
    scored = (
        (
            keyword_score(text=text, keywords=b.keywords)
            + 2 * keyword_score(text=lead, keywords=b.keywords),
            b,
        )
        for b in BLOCKS
    )
    score, block = max(scored, key=lambda pair: pair[0])
    return block if score > 0 else None


_AND = re.compile(r"(?<!\s)\s+and\s+")  # from where white space starts: linear


def _split_on_and(clause: str) -> list[tuple[str, Block | None]]:
    """Split "search X and summarise it" where both sides are different things to do."""
    parts = _AND.split(clause)
    pieces: list[tuple[list[str], Block | None]] = [([parts[0]], match_block(parts[0]))]
    for part in parts[1:]:
        texts, block = pieces[-1]
        part_block = match_block(part)
        if block is not None and part_block is not None and part_block is not block:
            pieces.append(([part], part_block))
        else:
            texts.append(part)  # joined once below (joining each time was quadratic)
            pieces[-1] = (texts, block or part_block)
    return [(" and ".join(texts), block) for texts, block in pieces]


def _pull_schedule(clause: str) -> tuple[str | None, str]:
    """Split "fetch X every hour" into ("every hour", "fetch X"); else (None, clause)."""
    match = _FREQUENCY_RE.search(clause)
    if match is None:
        return None, clause
    rest = " ".join(f"{clause[: match.start()]} {clause[match.end() :]}".split()).strip(" ,")
    if not rest or match_block(rest) in {None, SCHEDULE}:
        return None, clause
    return match.group(0), rest


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def split_steps(goal: str) -> list[Step]:
    """The goal's steps in order; clauses without a block become detail of a neighbour.

    A schedule mentioned inside another step ("fetch X every hour") becomes a Schedule
    step of its own, first in the chain, since it is what starts the agent.
    """
    masked, hidden = protect(goal)
    pieces: list[tuple[list[str], Block]] = []  # each step's texts, joined with ", " at the end
    orphans: list[str] = []
    schedule: str | None = None
    for clause in split_clauses(masked):
        pulled, clause = _pull_schedule(clause)
        schedule = schedule or pulled
        for text, block in _split_on_and(clause):
            if block is None:
                if pieces:
                    pieces[-1][0].append(text)
                else:
                    orphans.append(text)
                continue
            pieces.append(([*orphans, text], block))
            orphans.clear()
    if schedule is not None and all(block is not SCHEDULE for _, block in pieces):
        pieces.insert(0, ([schedule], SCHEDULE))
    return [
        Step(description=_capitalised(restore(", ".join(texts), hidden)), block=block)
        for texts, block in pieces
    ]


def _topic(goal: str) -> str:
    words = (
        word
        for word in meaningful_words(goal)
        if not any(keyword_score(text=word, keywords=block.keywords) for block in BLOCKS)
    )
    return " ".join(itertools.islice(words, 4)) or "a topic you care about"


def _unachievable(goal: str) -> dict[str, Any] | None:
    for pattern, reason, suggestion in _UNACHIEVABLE:
        if re.search(pattern, goal, re.IGNORECASE):
            return {"type": "unachievable_goal", "reason": reason, "suggested_goal": suggestion}
    return None


class _GoalFacts:
    """What the questions ask of the whole goal, each read at most once (not once a step)."""

    def __init__(self, goal: str) -> None:
        self.goal = goal

    @cached_property
    def has_email(self) -> bool:
        return EMAIL_RE.search(self.goal) is not None

    @cached_property
    def has_channel(self) -> bool:
        return slack_channel_in(self.goal) is not None

    @cached_property
    def has_language(self) -> bool:
        return language_in(self.goal) is not None

    @cached_property
    def has_url(self) -> bool:
        return URL_RE.search(self.goal) is not None


def _question(step: Step, *, goal: _GoalFacts, first_source: bool) -> dict[str, str] | None:
    """A clarifying question for what ``step`` lacks, or None when it has what it needs."""
    name = step.block.name
    if name == "Send email" and not goal.has_email:
        return {
            "question": "Which e-mail address should the email be sent to?",
            "keyword": "recipient_email",
            "example": "you@example.com",
        }
    if name == "Schedule" and cron_from_text(step.description) is None:
        return {
            "question": "How often, and at what time, should the agent run?",
            "keyword": "schedule",
            "example": "every weekday at 8am",
        }
    if name == "Post to Slack" and not goal.has_channel:
        return {
            "question": "Which Slack channel should the message be posted to?",
            "keyword": "slack_channel",
            "example": "#general",
        }
    if name == "Translate text" and not goal.has_language:
        return {
            "question": "Which language should the text be translated into?",
            "keyword": "target_language",
            "example": "French",
        }
    if name in {"Fetch URL", "Read RSS feed"} and first_source and not goal.has_url:
        what = "feed" if name == "Read RSS feed" else "web page"
        return {
            "question": f"What is the address of the {what} to read?",
            "keyword": "feed_url" if name == "Read RSS feed" else "url",
            "example": "https://example.com/feed.xml"
            if name == "Read RSS feed"
            else "https://example.com/pricing",
        }
    return None


def decompose(*, description: str) -> dict[str, Any]:
    """The decompose result for the goal ``description`` (see the module docstring)."""
    goal = " ".join(description.split())
    if (unachievable := _unachievable(goal)) is not None:
        return unachievable
    steps = split_steps(goal)
    if len(meaningful_words(goal)) < 4 or not steps:
        return {"type": "vague_goal", "suggested_goal": _EXAMPLE_GOAL.format(topic=_topic(goal))}
    questions: list[dict[str, str]] = []
    seen_source = False
    facts = _GoalFacts(goal)
    for step in steps:
        question = _question(step, goal=facts, first_source=not seen_source)
        seen_source = seen_source or not step.block.is_trigger
        if question is not None and question["keyword"] not in {q["keyword"] for q in questions}:
            questions.append(question)
    if questions:
        return {"type": "clarifying_questions", "questions": questions}
    return {"type": "instructions", "steps": [step.as_json() for step in steps]}
