"""Fill a node's ``input_default`` from the words of its step.

Rule-based and deliberately modest: it picks out what a person would copy by hand (an
e-mail address, a Slack channel, "every weekday at 8am" as a cron expression, "top 3",
"into French") and leaves the rest to the links or to the defaults below.

Each rule is linear in its text: a pattern that could fail from many starting points in one
run of text is given only the starting points that can succeed (same result, found once).
What is read from the goal alone (its subject, its slug) is kept for the last few goals, as
every node of an agent asks the same goal again.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .catalogue import Block
from .text import URL_RE, email_matches

__all__ = ["LANGUAGES", "cron_from_text", "extract_inputs", "language_in", "slack_channel_in"]

LANGUAGES = frozenset(
    {
        *("Arabic", "Chinese", "Czech", "Danish", "Dutch", "English", "Finnish", "French"),
        *("German", "Greek", "Hindi", "Italian", "Japanese", "Korean", "Norwegian", "Polish"),
        *("Portuguese", "Russian", "Spanish", "Swedish", "Turkish", "Ukrainian"),
    }
)

_DAYS = {
    "sunday": 0,
    "monday": 1,
    "tuesday": 2,
    "wednesday": 3,
    "thursday": 4,
    "friday": 5,
    "saturday": 6,
}
_PARTS_OF_DAY = {"morning": 8, "noon": 12, "afternoon": 14, "evening": 18, "night": 21}
_CHANNEL_RE = re.compile(r"(?<![\w&])#([a-z0-9][\w-]*)", re.IGNORECASE)
# "\b([a-z0-9][\w-]*) channel\b", found from the start of each run of [\w-] that is followed
# by " channel" (every start inside one run ends the same way, so the first one that can
# start the name is the match).
_BEFORE_CHANNEL = re.compile(r"(?<![\w-])([\w-]+) channel\b", re.IGNORECASE)
_NAME_START = re.compile(r"\b[a-z0-9]", re.IGNORECASE)
_NUMBER_RE = r"(\d{1,3})"


def language_in(text: str) -> str | None:
    """The first language named in ``text``, capitalised ("into french" gives "French")."""
    for word in re.findall(r"[A-Za-z]+", text):
        if word.capitalize() in LANGUAGES:
            return word.capitalize()
    return None


def slack_channel_in(text: str) -> str | None:
    """A ``#channel`` named in ``text``, or the word after "channel"/"in" + "channel"."""
    if match := _CHANNEL_RE.search(text):
        return f"#{match.group(1).lower()}"
    if (name := _word_before_channel(text)) is not None:
        name = name.lower()
        if name not in {"the", "a", "our", "my", "slack", "team"}:
            return f"#{name}"
    return None


def _word_before_channel(text: str) -> str | None:
    pos = 0
    while (run := _BEFORE_CHANNEL.search(text, pos)) is not None:
        start, end = run.span(1)
        if (first := _NAME_START.search(text, start, end)) is not None:
            return text[first.start() : end]
        pos = end
    return None


def _time_of_day(text: str) -> tuple[int, int] | None:
    lowered = text.lower()
    if match := re.search(r"\b(\d{1,2})(?::(\d{2}))?\s*([ap])\.?m\.?\b", lowered):
        hour, minute = int(match.group(1)) % 12, int(match.group(2) or 0)
        return (hour + 12 if match.group(3) == "p" else hour), minute
    if match := re.search(r"\b([01]?\d|2[0-3]):([0-5]\d)\b", lowered):
        return int(match.group(1)), int(match.group(2))
    if "midnight" in lowered:
        return 0, 0
    for part, hour in _PARTS_OF_DAY.items():
        if re.search(rf"\b{part}s?\b", lowered):
            return hour, 0
    return None


def cron_from_text(text: str) -> str | None:
    """A cron expression for the schedule in ``text``, or None when it names none.

    "every weekday at 8am" gives ``0 8 * * 1-5``; "every Monday" ``0 9 * * 1``;
    "hourly" ``0 * * * *``; "every 15 minutes" ``*/15 * * * *``. A time without a
    frequency ("at 7:30") means daily.
    """
    lowered = text.lower()
    if match := re.search(rf"\bevery {_NUMBER_RE} ?(?:minutes|mins)\b", lowered):
        return f"*/{int(match.group(1))} * * * *"
    if match := re.search(rf"\bevery {_NUMBER_RE} ?hours\b", lowered):
        return f"0 */{int(match.group(1))} * * *"
    if re.search(r"\b(hourly|every hour|each hour)\b", lowered):
        return "0 * * * *"
    time_of_day = _time_of_day(lowered)
    hour, minute = time_of_day or (9, 0)
    days = [num for day, num in _DAYS.items() if re.search(rf"\b{day}s?\b", lowered)]
    if re.search(r"\bweekdays?\b|\bworking days?\b", lowered):
        dow = "1-5"
    elif re.search(r"\bweekends?\b", lowered):
        dow = "0,6"
    elif days:
        dow = ",".join(str(day) for day in sorted(days))
    elif re.search(r"\b(weekly|every week|each week)\b", lowered):
        dow = "1"
    elif re.search(r"\b(monthly|every month|each month)\b", lowered):
        return f"{minute} {hour} 1 * *"
    elif time_of_day is not None or re.search(r"\b(daily|every day|each day)\b", lowered):
        dow = "*"
    else:
        return None
    return f"{minute} {hour} * * {dow}"


def _number_before(text: str, nouns: str, default: int) -> int:
    match = re.search(rf"\b(?:top\s+)?{_NUMBER_RE}\s+(?:\w+\s+)?(?:{nouns})\b", text, re.I)
    if match is None:
        match = re.search(rf"\btop\s+{_NUMBER_RE}\b", text, re.IGNORECASE)
    return int(match.group(1)) if match else default


_ABOUT = re.compile(r"\b(?:for|about|on|regarding)\s+(.+)$", re.IGNORECASE)


def _search_query(text: str) -> str:
    # "(.+)$" cannot cross a line break before the last character, so no match starts
    # before the white space around the last such break: start the search there (from
    # each earlier "for", ".+" rescanned the line).
    start = 0
    if (newline := text.rfind("\n", 0, len(text) - 1)) >= 0:
        start = max(0, len(text[:newline].rstrip()) - len("regarding"))
    if match := _ABOUT.search(text, start):
        query = match.group(1)
    else:
        query = re.sub(r"^\s*(?:search|look up|google|find|research)\w*\s+", "", text, flags=re.I)
    query = re.sub(r"^(?:the\s+)?(?:latest|newest|top\s+\d+)?\s*", "", query, flags=re.I)
    return query.strip(" .") or text.strip(" .")


# What follows "extract" is, as one pattern (re.IGNORECASE):
#   \bextract\w*\s+(?:the\s+)?(.+?)(?:\s+from\b|$)
# Tried as such it rescanned a line from each "extract" in it, from each character given
# back by "\s+", and "\s+from" from each character of a run of white space (quadratic or
# worse). _extract_target gives the same group, trying each start once.
_EXTRACT_HEAD = re.compile(r"\bextract\w*(\s+)(?:(the)(\s+))?", re.IGNORECASE)
_EXTRACT_REST = re.compile(r"(.+?)(?:(?<!\s)\s+from\b|$)", re.IGNORECASE)
_FROM = re.compile(r"from\b", re.IGNORECASE)
_FIELD_SPLIT = re.compile(r",\s*|(?<!\s)\s+and\s+")


def _given_back(text: str, run_start: int, run_end: int) -> str | None:
    r"""The group when the pattern gives back white space ``[run_start, run_end)``.

    The group then starts in it, at one white space character (not a line break), and
    ends at once: where "\s+from" follows the run, or at the end of the text.
    """
    last = run_end - 1
    if last <= run_start:
        return None
    if run_end == len(text):
        if text[last] != "\n":
            return text[last:]
        return text[last - 1 : last] if last - 1 > run_start and text[last - 1] != "\n" else None
    if _FROM.match(text, run_end):
        for start in range(run_end - 2, run_start, -1):
            if text[start] != "\n":
                return text[start : start + 1]
    return None


def _extract_at(text: str, head: re.Match[str]) -> str | None:
    """The group from this "extract", trying starts in the pattern's order."""
    if head.group(2) is not None:
        the_end, start = head.span(3)
        if (rest := _EXTRACT_REST.match(text, start)) is not None:
            return rest.group(1)
        if (found := _given_back(text, the_end, start)) is not None:
            return found
    run_start, start = head.span(1)
    if (rest := _EXTRACT_REST.match(text, start)) is not None:
        return rest.group(1)
    return _given_back(text, run_start, start)


def _extract_target(text: str) -> str | None:
    """The group of the pattern above (its first match), or None."""
    pos, failed_until = 0, -1
    while (head := _EXTRACT_HEAD.search(text, pos)) is not None:
        pos = head.start() + 1
        # An "extract" whose text starts on the line where one already failed fails too.
        if head.end() <= failed_until:
            continue
        if (found := _extract_at(text, head)) is not None:
            return found
        newline = text.find("\n", head.end(1))
        failed_until = newline if newline >= 0 else len(text)
    return None


def _extract_fields(text: str) -> list[str]:
    target = _extract_target(text)
    if target is None:
        return ["key facts"]
    parts = _FIELD_SPLIT.split(target)
    return [part.strip(" .") for part in parts if part.strip(" .")] or ["key facts"]


def _comparison(text: str) -> tuple[str, str]:
    lowered = text.lower()
    number = r"\$?(\d+(?:\.\d+)?)"
    rules = (
        (rf"\b(?:above|over|more than|greater than|exceeds?|higher than)\s+{number}", ">"),
        (rf"\b(?:below|under|less than|drops below|lower than)\s+{number}", "<"),
    )
    for pattern, operator in rules:
        if match := re.search(pattern, lowered):
            return operator, match.group(1)
    if (found := _contained(lowered)) is not None:
        return "contains", found.strip()
    return "is not empty", ""


_CONTAINS = re.compile(r"\b(?:contains?|mentions?)(\s+)[\"']?")
_NOT_LISTED = re.compile(r"[^\w -]")


def _contained(text: str) -> str | None:
    r"""What ``\b(?:contains?|mentions?)\s+["']?([\w -]+?)["']?$`` finds, in linear time.

    Its text runs to ``end`` (the end but a quote and a final line break), so it lies in
    the last run of ``[\w -]`` before ``end``: from each "contains", the pattern tries the
    latest start first (after the white space and a quote, then back into spaces), and the
    first start in that run wins. Tried by the pattern itself, each "contains" rescanned
    the run (quadratic).
    """
    end = len(text) - 1 if text.endswith("\n") else len(text)
    if end > 0 and text[end - 1] in "\"'":
        end -= 1
    run_start = 0
    for unlisted in _NOT_LISTED.finditer(text, 0, end):
        run_start = unlisted.end()
    pos = 0
    while (word := _CONTAINS.search(text, pos)) is not None:
        start = min(word.end(), end - 1)
        if start > word.start(1) and start >= run_start:
            return text[start:end]
        pos = word.start() + 1
    return None


_SUBJECT = re.compile(r"\bsubject\s+[\"'\u201c]([^\"'\u201d]+)[\"'\u201d]", re.IGNORECASE)


@lru_cache(maxsize=4)
def _subject(goal: str) -> str:
    """An explicit subject ("with the subject 'Weekly digest'"), else "" (filled later)."""
    # A match ends at a closing quote, so none ends after the last one; searching only up
    # to it, every "subject" tried stops at the next closing quote (from each "subject",
    # an unclosed quote rescanned the rest of the text).
    last = max(goal.rfind(quote) for quote in "\"'\u201d")
    match = _SUBJECT.search(goal, 0, last + 1) if last >= 0 else None
    return match.group(1) if match else ""


@lru_cache(maxsize=4)
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "agent"


def extract_inputs(*, block: Block, text: str, goal: str) -> dict[str, Any]:
    """``input_default`` for a node of ``block`` built for the step ``text`` of ``goal``."""
    urls = URL_RE.findall(text)
    url = urls[0] if urls else ""
    match block.name:
        case "Manual trigger":
            return {"name": "Input", "value": ""}
        case "Schedule":
            return {"cron": cron_from_text(text) or "0 9 * * *", "timezone": "UTC", "message": ""}
        case "Webhook trigger":
            return {"path": f"/hooks/{_slug(goal)}"}
        case "Web search":
            nouns = "results|articles|stories|links|pages|items|posts|headlines"
            return {"query": _search_query(text), "max_results": _number_before(text, nouns, 5)}
        case "Fetch URL":
            return {"url": url}
        case "Read RSS feed":
            nouns = "entries|items|posts|articles|episodes"
            return {"feed_url": url, "max_items": _number_before(text, nouns, 10)}
        case "HTTP request":
            method = "POST" if re.search(r"\b(post|send|submit|create)\b", text, re.I) else "GET"
            return {"url": url, "method": method, "body": {}}
        case "Read spreadsheet":
            return {"spreadsheet_url": url, "sheet_name": "Sheet1"}
        case "Write spreadsheet":
            return {"spreadsheet_url": url}
        case "Summarise text":
            style = "bullet points" if re.search(r"\bbullet", text, re.I) else "paragraph"
            max_words = re.search(r"\b(\d{1,4})\s+words\b", text)
            return {"max_words": int(max_words.group(1)) if max_words else 150, "style": style}
        case "Extract data":
            return {"fields": _extract_fields(text)}
        case "Translate text":
            return {"target_language": language_in(text) or ""}
        case "Generate text":
            return {"prompt": text}
        case "Filter list":
            return {"condition": text}
        case "Condition":
            operator, compare_to = _comparison(text)
            return {"operator": operator, "compare_to": compare_to}
        case "Format text":
            return {"template": "{values}"}
        case "Store value":
            return {"key": _slug(text)}
        case "Send email":
            to = ", ".join(match.group(0) for match in email_matches(text))
            return {"to": to, "subject": _subject(goal)}
        case "Post to Slack":
            return {"channel": slack_channel_in(text) or ""}
    return {}
