"""The job page's live log (``static/copilot/job_page.js``) words events exactly as the
server-rendered log (``copilot.jobs.presenters.event_line``) does, so a reload changes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from copilot.jobs.models import JobEvent
from copilot.jobs.presenters import event_line

ROOT = Path(__file__).resolve().parents[3]

EVENTS = [
    ("status", {"status": "queued", "previous": None, "attempt": 1, "terminal": False}),
    ("status", {"status": "running", "upstream_job_id": "abc", "terminal": False}),
    ("status", {"status": "running", "upstream_status": "pending", "terminal": False}),
    ("progress", {"percent": 40, "phase": "matching blocks"}),
    ("progress", {"percent": None, "phase": None}),
    (
        "result",
        {
            "status": "completed",
            "terminal": True,
            "result": {
                "type": "instructions",
                "steps": [{"description": "a"}, {"description": "b"}],
            },
        },
    ),
    (
        "result",
        {
            "status": "completed",
            "result": {"type": "agent", "agent_json": {"nodes": [{}, {}, {}], "links": [{}]}},
        },
    ),
    ("result", {"status": "completed", "result": {"type": "vague_goal", "suggested_goal": "x"}}),
    (
        "result",
        {
            "status": "completed",
            "result": {"type": "clarifying_questions", "questions": [{"question": "q"}]},
        },
    ),
    ("error", {"status": "failed", "error_type": "rate_limit", "error_message": "429 <b>x</b>"}),
    ("error", {"status": "timed_out", "error_type": "poll_timeout", "error_message": "late"}),
    ("retry", {"status": "queued", "attempt": 2, "by": "alice"}),
    ("cancel_requested", {"by": "bob"}),
]


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")
def test_live_and_server_rendered_log_lines_are_the_same():
    events = [JobEvent(seq=n, type=kind, data=data) for n, (kind, data) in enumerate(EVENTS, 1)]
    script = (
        "import {readFileSync} from 'node:fs';"
        "import {eventLine} from './static/copilot/job_page.js';"
        "const events = JSON.parse(readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(events.map(eventLine)));"
    )
    answer = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=ROOT,
        input=json.dumps([{"id": e.seq, "type": e.type, "data": e.data} for e in events]),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(answer.stdout) == [event_line(e) for e in events]
