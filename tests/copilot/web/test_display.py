"""The display helpers shared by the pages and the admin: JSON as text, elapsed time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from copilot.ops.admin import json_pre
from copilot.web.display import format_elapsed, pretty_json


def test_pretty_json_indents_keeps_key_order_and_non_ascii():
    assert pretty_json({"b": 1, "a": ["é"]}) == '{\n  "b": 1,\n  "a": [\n    "é"\n  ]\n}'


def test_pretty_json_sorts_keys_on_request():
    assert pretty_json({"b": 1, "a": {"d": 2, "c": 3}}, sort_keys=True) == (
        '{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1\n}'
    )


def test_pretty_json_is_plain_text_not_escaped():
    # The caller escapes: a template, or format_html in the admin.
    assert pretty_json("<b>") == '"<b>"'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (timedelta(0), "0:00"),
        (timedelta(seconds=59.9), "0:59"),
        (timedelta(seconds=61), "1:01"),
        (timedelta(hours=1, minutes=2, seconds=3), "1:02:03"),
        (timedelta(days=1, seconds=5), "24:00:05"),
    ],
)
def test_format_elapsed(value, text):
    assert format_elapsed(value) == text


@pytest.mark.parametrize("empty", [None, {}, []])
def test_admin_json_pre_shows_a_dash_for_nothing(empty):
    assert json_pre(empty) == "—"


def test_admin_json_pre_wraps_the_sorted_text_escaped():
    value = {"z": "<script>", "a": "é"}
    assert json_pre(value) == (
        '<pre class="copilot-json-pre">'  # styled by static/copilot/admin.css, not style=""
        "{\n  &quot;a&quot;: &quot;é&quot;,\n  &quot;z&quot;: &quot;&lt;script&gt;&quot;\n}"
        "</pre>"
    )
