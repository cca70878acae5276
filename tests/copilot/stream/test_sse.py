"""Unit tests for ``copilot.stream.sse``: exact bytes, plus a round trip through a WHATWG-style
parser to prove that hostile values cannot forge fields or extra events."""

from __future__ import annotations

import json
import re

import pytest

from copilot.stream.sse import MAX_EVENT_ID, encode_comment, encode_event, parse_last_event_id


def parse_stream(raw: bytes) -> list[dict[str, str]]:
    """Parse SSE bytes the way a browser does (WHATWG "interpret the stream"), returning the
    dispatched events as ``{"id", "event", "data"}``. ``id`` is the last-event-ID buffer."""
    events: list[dict[str, str]] = []
    last_id = ""
    event_type = ""
    data = ""
    for line in re.split(r"\r\n|\r|\n", raw.decode("utf-8")):
        if line == "":
            if data:
                events.append({"id": last_id, "event": event_type or "message", "data": data[:-1]})
            event_type = ""
            data = ""
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event_type = value
        elif field == "data":
            data += value + "\n"
        elif field == "id" and "\0" not in value:
            last_id = value
    return events


class TestEncodeEvent:
    def test_full_frame_exact_bytes(self) -> None:
        frame = encode_event(id=7, event="progress", data={"percent": 40, "phase": "plan"})
        assert frame == b'id: 7\nevent: progress\ndata: {"percent":40,"phase":"plan"}\n\n'

    def test_only_data(self) -> None:
        assert encode_event(data={"a": 1}) == b'data: {"a":1}\n\n'

    def test_none_data_is_json_null_so_the_frame_is_dispatched(self) -> None:
        frame = encode_event(event="reconnect")
        assert frame == b"event: reconnect\ndata: null\n\n"
        assert parse_stream(frame) == [{"id": "", "event": "reconnect", "data": "null"}]

    def test_string_id_kept_as_is(self) -> None:
        assert encode_event(id="abc-1", data="x") == b"id: abc-1\ndata: x\n\n"

    def test_retry(self) -> None:
        assert encode_event(data="x", retry_ms=2500) == b"retry: 2500\ndata: x\n\n"

    @pytest.mark.parametrize("bad", [-1, True, 1.5, "100"])
    def test_retry_must_be_a_non_negative_int(self, bad: object) -> None:
        with pytest.raises(ValueError, match="retry_ms"):
            encode_event(data="x", retry_ms=bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize("newline", ["\n", "\r", "\r\n", "\0"])
    def test_event_injection_is_neutralised(self, newline: str) -> None:
        hostile = f"status{newline}data: forged{newline}{newline}event: evil"
        frame = encode_event(id=1, event=hostile, data={"ok": True})
        assert frame == b'id: 1\nevent: statusdata: forgedevent: evil\ndata: {"ok":true}\n\n'
        assert parse_stream(frame) == [
            {"id": "1", "event": "statusdata: forgedevent: evil", "data": '{"ok":true}'}
        ]

    @pytest.mark.parametrize("newline", ["\n", "\r", "\r\n"])
    def test_id_injection_is_neutralised(self, newline: str) -> None:
        frame = encode_event(id=f"5{newline}{newline}data: forged", data="real")
        assert frame == b"id: 5data: forged\ndata: real\n\n"
        events = parse_stream(frame)
        assert len(events) == 1
        assert events[0]["data"] == "real"

    def test_nul_stripped_from_id(self) -> None:
        # A browser would ignore an id containing NUL; stripping keeps the id usable.
        assert encode_event(id="4\x002", data="x") == b"id: 42\ndata: x\n\n"

    def test_event_that_is_only_newlines_is_left_out(self) -> None:
        assert encode_event(event="\r\n", data="x") == b"data: x\n\n"

    @pytest.mark.parametrize(
        ("text", "lines"),
        [
            ("one\ntwo", ["one", "two"]),
            ("one\rtwo", ["one", "two"]),
            ("one\r\ntwo", ["one", "two"]),
            ("a\n\rb\r\n\nc", ["a", "", "b", "", "c"]),
            ("trailing\n", ["trailing", ""]),
            ("", [""]),
        ],
    )
    def test_multiline_string_data(self, text: str, lines: list[str]) -> None:
        frame = encode_event(data=text)
        assert frame == ("".join(f"data: {line}\n" for line in lines) + "\n").encode()
        # The receiver joins data lines with LF: every newline form comes back as LF.
        assert parse_stream(frame)[0]["data"] == "\n".join(lines)

    def test_data_line_cannot_start_a_new_event(self) -> None:
        frame = encode_event(id=1, data="x\n\nid: 99\nevent: evil\ndata: y")
        events = parse_stream(frame)
        assert len(events) == 1
        assert events[0] == {
            "id": "1",
            "event": "message",
            "data": "x\n\nid: 99\nevent: evil\ndata: y",
        }

    def test_json_data_with_newlines_in_values_stays_one_line(self) -> None:
        frame = encode_event(data={"text": "line1\nline2\r\n", "nul": "\0"})
        assert frame.count(b"\n") == 2
        assert json.loads(parse_stream(frame)[0]["data"]) == {
            "text": "line1\nline2\r\n",
            "nul": "\0",
        }

    def test_unicode_is_utf8_not_escaped(self) -> None:
        phase = "Planung \u2013 \u2713 \U0001f680"
        frame = encode_event(id=2, event="progress", data={"phase": phase})
        assert frame == f'id: 2\nevent: progress\ndata: {{"phase":"{phase}"}}\n\n'.encode()
        assert b"\\u" not in frame
        assert json.loads(parse_stream(frame)[0]["data"]) == {"phase": phase}

    def test_unicode_line_separators_are_not_sse_line_breaks(self) -> None:
        # U+2028/U+2029/U+0085 are not line ends for SSE, so they pass through unchanged.
        frame = encode_event(data="a\u2028b\u2029c\u0085d")
        assert parse_stream(frame)[0]["data"] == "a\u2028b\u2029c\u0085d"

    def test_frames_concatenate_into_a_stream(self) -> None:
        stream = (
            encode_event(event="snapshot", data={"status": "running"})
            + encode_comment()
            + encode_event(id=1, event="status", data={"status": "running"})
            + encode_event(id=2, event="result", data={"terminal": True})
        )
        assert [(e["id"], e["event"]) for e in parse_stream(stream)] == [
            ("", "snapshot"),
            ("1", "status"),
            ("2", "result"),
        ]

    def test_keyword_only(self) -> None:
        with pytest.raises(TypeError):
            encode_event(1, "x", "y")  # type: ignore[misc]


class TestEncodeComment:
    def test_default_is_ping(self) -> None:
        assert encode_comment() == b": ping\n\n"

    def test_newlines_stripped(self) -> None:
        assert encode_comment("a\nb\r\nc\rd\0") == b": abcd\n\n"
        assert parse_stream(encode_comment("x\n\ndata: forged\n\n")) == []

    def test_empty(self) -> None:
        assert encode_comment("") == b":\n\n"
        assert encode_comment("\n") == b":\n\n"

    def test_unicode(self) -> None:
        assert encode_comment("ça va") == ": ça va\n\n".encode()


class TestParseLastEventId:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("0", 0),
            ("1", 1),
            ("42", 42),
            (" 42 ", 42),
            ("007", 7),
            (str(MAX_EVENT_ID), MAX_EVENT_ID),
        ],
    )
    def test_valid(self, value: str, expected: int) -> None:
        assert parse_last_event_id(value) == expected

    @pytest.mark.parametrize(
        "value",
        [
            None,
            "",
            "   ",
            "-1",
            "-0",
            "+5",
            "1.5",
            "1e3",
            "0x10",
            "1_000",
            "12abc",
            "abc",
            "4\n2",
            "٣",  # Arabic-Indic digit: str.isdigit() and int() accept it, we do not
            "\uff11\uff12",  # full-width digits
            str(MAX_EVENT_ID + 1),
            str(2**64),
            "9" * 5000,  # beyond int()'s digit limit: must not raise
        ],
    )
    def test_invalid_counts_as_none(self, value: str | None) -> None:
        assert parse_last_event_id(value) == 0
