"""Small text helpers shared by the rule-based generator (no language model here).

Keywords are lower-case words or phrases. A keyword ending in ``*`` is a stem and matches
any word that starts with it (``summar*`` finds "summarise", "summary"); any other
keyword matches whole words only, optionally followed by a plural "s" ("news", "prices").

Every helper here is linear in its text: no pattern is tried again from each character of a
run it has already scanned (see :func:`email_matches`, :func:`protect`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from functools import cache

__all__ = [
    "EMAIL_RE",
    "URL_RE",
    "email_matches",
    "keyword_score",
    "meaningful_words",
    "protect",
    "restore",
    "split_clauses",
]

_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
# An address starts where a run of address characters starts: tried from each character
# of a long run without "@", the plain pattern rescanned the run (quadratic). The plain one
# is still needed where a previous match ended inside a run (see email_matches).
EMAIL_RE = re.compile(r"(?<![\w.+-])" + _EMAIL)
_EMAIL_HERE = re.compile(_EMAIL)
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
# White space before the word is taken only from where it starts ("(?<!\s)"), not from
# each of its characters (quadratic in its length); with none, the word itself.
_STEP_SPLIT = re.compile(
    r",?(?:(?<!\s)\s+)?\b(?:and then|then|after that|afterwards|finally)\b,?\s*"
    r"|,\s+(?:and\s+)?",
    re.IGNORECASE,
)


@cache
def _keyword_re(keyword: str) -> re.Pattern[str]:
    if keyword.endswith("*"):
        return re.compile(r"(?<![\w-])" + re.escape(keyword[:-1]), re.IGNORECASE)
    return re.compile(r"(?<![\w-])" + re.escape(keyword) + r"(?:s|es)?(?![\w-])", re.IGNORECASE)


def email_matches(text: str) -> Iterator[re.Match[str]]:
    """The addresses in ``text``: what ``re.finditer`` of the plain pattern finds, in
    linear time.

    A match can start only where the previous one ended or where a run of address
    characters starts: a start inside a run ends the same way as the run's start.
    """
    pos = 0
    while True:
        match = (_EMAIL_HERE.match(text, pos) if pos else None) or EMAIL_RE.search(text, pos)
        if match is None:
            return
        yield match
        pos = match.end()


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


# A list after "extract" & co. is this pattern, with re.IGNORECASE:
#   \b(extract\w*|pull out|collect|including|such as|like|with|fields?)\s+
#   ((?:the\s+)?ITEM(?:,\s*ITEM)*,?\s+and\s+[\w-]+)      ITEM = [\w-]+(?:\s[\w-]+)?
# As one regular expression it rescanned a long list from each list word in it that fails
# (quadratic); _ListFinder gives the same matches, deciding each position once.
_LIST_KEYWORD = re.compile(
    r"\b(extract\w*|pull out|collect|including|such as|like|with|fields?)\s+", re.IGNORECASE
)
_THE = re.compile(r"the\s+", re.IGNORECASE)
_WORD = re.compile(r"[\w-]+")
_SECOND_WORD = re.compile(r"\s[\w-]+")
_NEXT_ITEM = re.compile(r",\s*(?=[\w-])")
_LIST_END = re.compile(r",?\s+and\s+[\w-]+", re.IGNORECASE)
_PLACEHOLDER_RE = re.compile(r"\x00(\d+)\x00")


class _ListFinder:
    """The lists of one text, found as the pattern above finds them.

    The pattern's backtracking tries, at each item, two words before one, and after an
    item another item before the end (",? and WORD"); the first way that succeeds wins.
    :meth:`_from_item` (where may the list end, from an item starting here) and
    :meth:`_after_item` (from an item ending here) follow that order, and are worked out
    once per position, without recursion (a list may have thousands of items).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._memo: dict[tuple[bool, int], int | None] = {}

    def _needs(self, key: tuple[bool, int]) -> list[tuple[bool, int]]:
        is_item_start, pos = key
        text = self.text
        if is_item_start:
            first = _WORD.match(text, pos)
            assert first is not None  # item starts are checked before
            second = _SECOND_WORD.match(text, first.end())
            ends = [second.end()] if second else []
            return [(False, end) for end in [*ends, first.end()]]
        following = _NEXT_ITEM.match(text, pos)
        return [(True, following.end())] if following else []

    def _decide(self, key: tuple[bool, int], needs: list[tuple[bool, int]]) -> int | None:
        for need in needs:
            if (end := self._memo[need]) is not None:
                return end
        if key[0]:
            return None
        ending = _LIST_END.match(self.text, key[1])
        return ending.end() if ending else None

    def list_end(self, start: int) -> int | None:
        """Where the list whose first item starts at ``start`` ends, or None."""
        if not _WORD.match(self.text, start):
            return None
        stack = [(True, start)]
        while stack:
            key = stack[-1]
            if key in self._memo:
                stack.pop()
                continue
            needs = self._needs(key)
            missing = [need for need in needs if need not in self._memo]
            if missing:
                stack.extend(missing)
                continue
            self._memo[key] = self._decide(key, needs)
            stack.pop()
        return self._memo[(True, start)]


def _hide_lists(text: str, hide: Callable[[str], str]) -> str:
    """``text`` with each list (the pattern above) after its keyword replaced by ``hide``."""
    finder = _ListFinder(text)
    parts: list[str] = []
    done = pos = 0
    while (keyword := _LIST_KEYWORD.search(text, pos)) is not None:
        start = keyword.end()
        end = None
        if (the := _THE.match(text, start)) is not None:
            end = finder.list_end(the.end())
        if end is None:
            end = finder.list_end(start)
        if end is None:
            pos = keyword.start() + 1
            continue
        parts += [text[done : keyword.start()], f"{keyword.group(1)} {hide(text[start:end])}"]
        done = pos = end
    parts.append(text[done:])
    return "".join(parts)


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
    parts: list[str] = []
    done = 0
    for match in email_matches(masked):
        parts += [masked[done : match.start()], hide(match.group(0))]
        done = match.end()
    masked = "".join([*parts, masked[done:]])
    masked = _hide_lists(masked, hide)
    return masked, protected


def restore(text: str, protected: list[str]) -> str:
    """Undo :func:`protect` on ``text`` (or on any piece of the masked text).

    One pass: a hidden piece holds no placeholder, unless the text itself had NUL
    characters (a URL may hold them); such text is put back as it was hidden (repeating
    the pass looped for ever on a URL that held its own placeholder), and a placeholder
    the text made up itself stays as written.
    """

    def piece(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return protected[index] if index < len(protected) else match.group(0)

    return _PLACEHOLDER_RE.sub(piece, text)


def split_clauses(masked: str) -> list[str]:
    """Split a (protected) goal into ordered clauses: sentences, "then", "after that", commas."""
    clauses: list[str] = []
    for sentence in _SENTENCE_SPLIT.split(masked):
        for clause in _STEP_SPLIT.split(sentence):
            clause = clause.strip(" \t\r\n.!?;,")
            if clause:
                clauses.append(clause)
    return clauses
