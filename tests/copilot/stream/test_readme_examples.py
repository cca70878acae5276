"""The README's "Following a job's events" examples, run verbatim against a live portal.

``follow_job.py`` follows a job that the reference Agent Generator drives to its end, on a
server that rotates its streams every second, so the program must resume with
``Last-Event-ID`` several times; the ``curl -N`` line reads a completed job's events.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from copilot.jobs import services, transitions
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.jobs.tokens import api_token_create
from tests.copilot.stream.test_consumer import GOAL
from tests.support.live import LiveProcess, free_port, run_server
from tests.support.portal import ROOT, portal_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

README = ROOT / "README.md"
ROTATE_SECONDS = 1.0  # the server's COPILOT_STREAM_MAX_SECONDS here
JOB_SECONDS = 6  # the reference Agent Generator's job: several rotations long


def readme_python(first_line: str) -> str:
    """The README's ```python block whose first line starts with ``first_line``."""
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.MULTILINE | re.DOTALL)
    found = [block for block in blocks if block.startswith(first_line)]
    assert len(found) == 1, f"expected one ```python block starting {first_line!r} in README.md"
    return found[0]


def readme_curl_line() -> str:
    """The README's ``curl -N`` line for the stream."""
    lines = [line for line in README.read_text().splitlines() if line.startswith("curl -N ")]
    assert len(lines) == 1, lines
    return lines[0]


@contextlib.contextmanager
def portal(*, agent_generator_url: str = "http://127.0.0.1:9") -> Iterator[LiveProcess]:
    """``daphne copilot.asgi:application`` with its runner inside and short stream rotations."""
    port = free_port()
    env = portal_env(
        AGENT_GENERATOR_URL=agent_generator_url,
        COPILOT_RUNNER_IN_PROCESS="true",
        COPILOT_HEARTBEAT_SECONDS="0.3",
        COPILOT_STREAM_MAX_SECONDS=str(ROTATE_SECONDS),
        LOG_LEVEL="DEBUG",  # "stream open job=… from=…": where each connection resumed
    )
    daphne = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot.asgi:application"]
    with run_server(args=daphne, port=port, env=env, ready_path="/accounts/login/") as web:
        yield web


def run_example(args: list[str], *, env: dict[str, str], timeout: float = 90):
    """``args`` as a user's shell runs them: their PATH, the example's variables."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def stored_events(job: GenerationJob) -> list[tuple[int, str]]:
    return list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", "type"))


def test_follow_job_py_follows_a_job_to_its_end_across_rotations(tmp_path: Path, user):
    script = tmp_path / "follow_job.py"
    script.write_text(readme_python("# follow_job.py"))
    _token, key = api_token_create(user=user, name="readme")
    ref_port = free_port()
    reference = ["-m", "agent_generator.reference", "--host", "127.0.0.1", "--port", str(ref_port)]
    with (
        run_server(args=[*reference, "--job-seconds", str(JOB_SECONDS)], port=ref_port) as ref,
        portal(agent_generator_url=ref.url) as web,
    ):
        job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
        env = {"PORTAL_URL": web.url, "COPILOT_TOKEN": key, "JOB_ID": str(job.id)}
        followed = run_example([sys.executable, str(script)], env=env)
        refused = run_example([sys.executable, str(script)], env={**env, "COPILOT_TOKEN": "x"})
        output = web.output()

    assert followed.returncode == 0, f"{followed.stderr}\n{output[-5000:]}"
    printed = [line.split(" ", 2) for line in followed.stdout.splitlines()]
    seqs = [int(seq) for seq, _type, _data in printed]
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.COMPLETED
    # Every event once, in order, ending with the terminal one: no gap, no duplicate.
    assert seqs == list(range(1, job.last_event_seq + 1))
    assert [(int(s), t) for s, t, _data in printed] == stored_events(job)
    assert json.loads(printed[-1][2])["terminal"] is True and printed[-1][1] == "result"
    # The server rotated the stream mid-job and the program resumed, each time, after the
    # last event it had printed.
    opened = [int(n) for n in re.findall(rf"stream open job={job.id} from=(\d+)", output)]
    assert len(opened) >= 3, output[-5000:]
    assert opened[0] == 0 and set(opened[1:]) <= set(seqs), opened
    assert opened == sorted(opened)
    # A bad token is a one-line refusal and a failing exit status, not a retry loop.
    assert refused.returncode == 1
    assert refused.stderr.strip() == "401 Invalid token.", refused.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_line_reads_a_completed_job_s_events(user):
    _token, key = api_token_create(user=user, name="readme")
    job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
    job = transitions.job_mark_submitting(job=job).job
    job = transitions.job_mark_running(job=job, upstream_job_id="up-1").job
    transitions.job_complete(job=job, result={"type": "vague_goal", "suggested_goal": "g"})
    with portal() as web:
        env = {"PORTAL_URL": web.url, "COPILOT_TOKEN": key, "JOB_ID": str(job.id)}
        curl = run_example(["sh", "-c", readme_curl_line()], env=env, timeout=30)
        bad = run_example(["sh", "-c", readme_curl_line()], env={**env, "COPILOT_TOKEN": "x"})
        output = web.output()
    assert curl.returncode == 0, curl.stderr
    body = curl.stdout
    assert body.startswith(": open\n\nevent: snapshot\n"), f"{body[:500]}\n{output[-5000:]}"
    ids = [int(n) for n in re.findall(r"^id: (\d+)$", body, re.MULTILINE)]
    types = re.findall(r"^event: (\w+)$", body, re.MULTILINE)
    assert list(zip(ids, types[1:], strict=True)) == stored_events(job)
    assert body.endswith("\n\n") and '"terminal":true' in body.rsplit("id: ", 1)[1]
    assert bad.stdout == "Invalid token.\n"
