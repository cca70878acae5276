"""Server-Sent Events framing: the only place that turns an event into bytes on the wire.

Pure functions, no Django: the events view and its consumer call them, and the browser's
``static/copilot/stream.js`` parses what they produce. The rules follow the WHATWG
"Server-sent events" spec (https://html.spec.whatwg.org/multipage/server-sent-events.html):

- A frame is a block of ``field: value`` lines ended by a blank line.
- CR, LF and CRLF all end a line, so a newline inside ``id`` or ``event`` would let a value
  start a field of its own (``event="x\\ndata: forged"``). :func:`encode_event` strips CR, LF
  and NUL from both (a browser ignores an ``id`` that contains NUL anyway).
- ``data`` may span lines: each line becomes its own ``data:`` line and the client joins
  them with ``\\n``.

Example::

    >>> encode_event(id=3, event="progress", data={"percent": 40})
    b'id: 3\\nevent: progress\\ndata: {"percent":40}\\n\\n'
    >>> encode_comment()
    b': ping\\n\\n'
"""

from __future__ import annotations

import json
import re

__all__ = ["MAX_EVENT_ID", "encode_comment", "encode_event", "parse_last_event_id"]

#: The largest ``Last-Event-ID`` we accept (the range of a signed 64-bit ``BIGINT`` column).
MAX_EVENT_ID = 2**63 - 1

_FIELD_UNSAFE = re.compile(r"[\r\n\x00]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_DIGITS = re.compile(r"[0-9]+")


def _clean_field(value: object) -> str:
    """Return ``value`` as text without CR, LF or NUL, so it cannot end its line early."""
    return _FIELD_UNSAFE.sub("", str(value))


def encode_event(
    *,
    id: int | str | None = None,
    event: str | None = None,
    data: object = None,
    retry_ms: int | None = None,
) -> bytes:
    """Encode one SSE frame as UTF-8 bytes, ending with the blank line that dispatches it.

    ``id`` and ``event`` lose any CR, LF and NUL (an ``event`` that ends up empty is left
    out, which a client reads as the default ``message`` type). ``data`` is sent as compact
    JSON (``ensure_ascii=False``) unless it is already a ``str``, which is sent as is, split
    on every line break (CRLF, CR, LF) into one ``data:`` line per line. ``None`` is JSON
    too (``data: null``): a frame without data would never be dispatched by a browser, so
    every frame carries at least one ``data:`` line. ``retry_ms`` sets the browser's
    reconnection delay and must be a non-negative ``int``.
    """
    lines: list[str] = []
    if id is not None:
        lines.append(f"id: {_clean_field(id)}")
    if event is not None:
        clean_event = _clean_field(event)
        if clean_event:
            lines.append(f"event: {clean_event}")
    if retry_ms is not None:
        if isinstance(retry_ms, bool) or not isinstance(retry_ms, int) or retry_ms < 0:
            raise ValueError(f"retry_ms must be a non-negative int, got {retry_ms!r}")
        lines.append(f"retry: {retry_ms}")
    text = (
        data
        if isinstance(data, str)
        else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    )
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(text))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def encode_comment(text: str = "ping") -> bytes:
    """Encode an SSE comment line (``: ping``), which clients ignore but which keeps the
    connection's bytes flowing through proxies and the browser's watchdog.

    CR, LF and NUL are stripped so the comment stays one line.
    """
    clean_text = _clean_field(text)
    return (f": {clean_text}\n\n" if clean_text else ":\n\n").encode("utf-8")


def parse_last_event_id(value: str | None) -> int:
    """Read a ``Last-Event-ID`` header (or ``?last_event_id=``) as a non-negative ``int``.

    Anything else counts as "no event seen yet" and gives ``0``: ``None``, an empty value,
    signs, decimals, non-ASCII digits, and numbers above :data:`MAX_EVENT_ID`. Surrounding
    whitespace is ignored. A client cannot make us fail or allocate much with this value.
    """
    if value is None:
        return 0
    text = value.strip()
    # Reject long inputs before int() sees them: MAX_EVENT_ID has 19 digits; leading zeros
    # beyond a sane length are not worth parsing.
    if len(text) > 32 or not _DIGITS.fullmatch(text):
        return 0
    number = int(text)
    return number if number <= MAX_EVENT_ID else 0
