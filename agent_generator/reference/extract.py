"""Fill a node's ``input_default`` from the words of its step.

Rule-based and deliberately modest: it picks out what a person would copy by hand (an
e-mail address, a Slack channel, "every weekday at 8am" as a cron expression, "top 3",
"into French") and leaves the rest to the links or to the defaults below.
"""

from __future__ import annotations

import re
from typing import Any

from .catalogue import Block
from .text import EMAIL_RE, URL_RE

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
    if match := re.search(r"\b([a-z0-9][\w-]*) channel\b", text, re.IGNORECASE):
        name = match.group(1).lower()
        if name not in {"the", "a", "our", "my", "slack", "team"}:
            return f"#{name}"
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


def _search_query(text: str) -> str:
    if match := re.search(r"\b(?:for|about|on|regarding)\s+(.+)$", text, re.IGNORECASE):
        query = match.group(1)
    else:
        query = re.sub(r"^\s*(?:search|look up|google|find|research)\w*\s+", "", text, flags=re.I)
    query = re.sub(r"^(?:the\s+)?(?:latest|newest|top\s+\d+)?\s*", "", query, flags=re.I)
    return query.strip(" .") or text.strip(" .")


def _extract_fields(text: str) -> list[str]:
    match = re.search(r"\bextract\w*\s+(?:the\s+)?(.+?)(?:\s+from\b|$)", text, re.IGNORECASE)
    if match is None:
        return ["key facts"]
    parts = re.split(r",\s*|\s+and\s+", match.group(1))
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
    if match := re.search(r"\b(?:contains?|mentions?)\s+[\"']?([\w -]+?)[\"']?$", lowered):
        return "contains", match.group(1).strip()
    return "is not empty", ""


def _subject(goal: str) -> str:
    """An explicit subject ("with the subject 'Weekly digest'"), else "" (filled later)."""
    match = re.search(r"\bsubject\s+[\"'\u201c]([^\"'\u201d]+)[\"'\u201d]", goal, re.IGNORECASE)
    return match.group(1) if match else ""


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
            return {"to": ", ".join(EMAIL_RE.findall(text)), "subject": _subject(goal)}
        case "Post to Slack":
            return {"channel": slack_channel_in(text) or ""}
    return {}
