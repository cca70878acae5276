"""Small text helpers shared by the rule-based generator (no language model here).

Keywords are lower-case words or phrases. A keyword ending in ``*`` is a stem and matches
any word that starts with it (``summar*`` finds "summarise", "summary"); any other
keyword matches whole words only, optionally followed by a plural "s" ("news", "prices").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

__all__ = [
    "EMAIL_RE",
    "URL_RE",
    "keyword_score",
    "meaningful_words",
    "protect",
    "restore",
    "split_clauses",
]

EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
URL_RE = re.compile(r"https?://[^\s,;]+[^\s,;.!?)]")

# Words that say nothing about what an agent should do; "I want marketing insights" has
# two meaningful words ("want" is here, "marketing" and "insights" are not).
_STOPWORD_TEXT = (
    "a an the and or but to of for in on at by with from into onto about as is are be "
    "it its this that these those me my i you your we our us them they their he she his "
    "her please can could would should will shall do does did just some any all get make "
    "want need like so then also up out over very really thing things stuff something "
    "help agent bot"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# Where a goal splits into steps: sentence ends, ";", "then", "after that", "finally", commas.
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+|;\s*")
_STEP_SPLIT = re.compile(
    r",?\s*\b(?:and then|then|after that|afterwards|finally)\b,?\s*|,\s+(?:and\s+)?",
    re.IGNORECASE,
)


@cache
def _keyword_re(keyword: str) -> re.Pattern[str]:
    if keyword.endswith("*"):
        return re.compile(r"(?<![\w-])" + re.escape(keyword[:-1]), re.IGNORECASE)
    return re.compile(r"(?<![\w-])" + re.escape(keyword) + r"(?:s|es)?(?![\w-])", re.IGNORECASE)


def keyword_score(*, text: str, keywords: Iterable[str]) -> int:
    """How strongly ``text`` points at something described by ``keywords``.

    Each keyword found adds its own length, so specific keywords ("translat*") weigh more
    than short, common ones ("every"). 0 means no keyword was found.
    """
    return sum(len(kw.rstrip("*")) for kw in keywords if _keyword_re(kw).search(text))


def meaningful_words(text: str) -> list[str]:
    """The lower-case words of ``text`` that carry meaning (no stop words, two letters+)."""
    words = re.findall(r"[a-zA-Z][a-zA-Z'-]+", text.lower())
    return [word for word in words if word not in STOPWORDS]


_LIST_RE = re.compile(
    r"\b(extract\w*|pull out|collect|including|such as|like|with|fields?)\s+"
    r"((?:the\s+)?[\w-]+(?:\s[\w-]+)?(?:,\s*[\w-]+(?:\s[\w-]+)?)*,?\s+and\s+[\w-]+)",
    re.IGNORECASE,
)
_PLACEHOLDER_RE = re.compile(r"\x00(\d+)\x00")


def protect(text: str) -> tuple[str, list[str]]:
    """Hide what must never split a step: addresses, URLs and lists after "extract".

    Returns the masked text and the hidden pieces; :func:`restore` puts them back. The
    hidden pieces take no part in keyword matching either ("extract the name, email and
    company" is one extraction step, not an e-mail step).
    """
    protected: list[str] = []

    def hide(piece: str) -> str:
        protected.append(piece)
        return f"\x00{len(protected) - 1}\x00"

    masked = URL_RE.sub(lambda m: hide(m.group(0)), text)
    masked = EMAIL_RE.sub(lambda m: hide(m.group(0)), masked)
    masked = _LIST_RE.sub(lambda m: f"{m.group(1)} {hide(m.group(2))}", masked)
    return masked, protected


def restore(text: str, protected: list[str]) -> str:
    """Undo :func:`protect` on ``text`` (or on any piece of the masked text)."""
    while _PLACEHOLDER_RE.search(text):
        text = _PLACEHOLDER_RE.sub(lambda m: protected[int(m.group(1))], text)
    return text


def split_clauses(masked: str) -> list[str]:
    """Split a (protected) goal into ordered clauses: sentences, "then", "after that", commas."""
    clauses: list[str] = []
    for sentence in _SENTENCE_SPLIT.split(masked):
        for clause in _STEP_SPLIT.split(sentence):
            clause = clause.strip(" \t\r\n.!?;,")
            if clause:
                clauses.append(clause)
    return clauses
