"""The API's contract, tested from outside: Schemathesis against the live server's schema.

The portal runs as in production (Daphne, its runner inside, the reference Agent Generator
behind it); Schemathesis reads ``/api/openapi.json`` and, with a real token, sends examples,
boundary values, fuzzed bodies and parameters to every operation, then chains them by the
schema's links (create a job, then read, cancel and retry that job). Every answer must be
documented (status, content type, body schema) and none may be a 5xx.

A failure prints Schemathesis' report, with the seed and a curl command that replays it; each
one it found is kept as a regression test of its own (tests/copilot/web/test_api*.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path
from xml.etree import ElementTree

import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.slow]

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
OPERATIONS = {
    "POST /api/jobs/",
    "GET /api/jobs/",
    "GET /api/jobs/{job_id}/",
    "POST /api/jobs/{job_id}/cancel/",
    "POST /api/jobs/{job_id}/retry/",
}
#: Test cases per operation and phase, and the run's time budget: about a minute in all.
MAX_EXAMPLES = 40
MAX_SECONDS = 60


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    return found


def test_schemathesis_finds_nothing(start_portal, user, tmp_path):
    portal = start_portal(job_seconds=1, cut_after=None)
    out = StringIO()
    call_command("create_api_token", "--user", user.username, "--name", "fuzzer", stdout=out)
    token = out.getvalue().strip()

    result = subprocess.run(
        [
            _schemathesis(), "run", f"{portal.web.url}/api/openapi.json",
            "--checks", ",".join(CHECKS),
            "--header", f"Authorization: Bearer {token}",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(MAX_EXAMPLES),
            "--max-time", str(MAX_SECONDS),
            "--workers", "1",
            "--request-timeout", "10",
            "--report", "junit", "--report-dir", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS * 3,
    )  # fmt: skip

    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-12_000:]
    # Every operation was tested, none failed, and the stateful phase chained operations
    # by the schema's links.
    suite = ElementTree.parse(next(tmp_path.glob("junit*.xml"))).getroot()
    cases = list(suite.iter("testcase"))
    assert {case.get("name") for case in cases} == {*OPERATIONS, "Stateful tests"}
    assert not [case for case in cases if case.find("failure") is not None]
    links = re.search(r"API Links:\s+(\d+) covered", report)
    assert links is not None and int(links.group(1)) >= 3, report[-6_000:]
