"""The web server as people start it: ``daphne copilot.asgi:application``, embedded runner."""

from __future__ import annotations

import time

import httpx
import pytest

from copilot.jobs import services
from copilot.jobs.models import GenerationJob
from tests.copilot.runner.test_runner_recovery import GOAL
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env
from tests.support.waiting import wait_for


@pytest.mark.slow
@pytest.mark.alldb
@pytest.mark.django_db(transaction=True)
def test_bare_daphne_serves_static_files_runs_jobs_and_releases_them_on_sigterm(user):
    ref_port, web_port = free_port(), free_port()
    reference = ["-m", "agent_generator.reference", "--host", "127.0.0.1", "--port", str(ref_port)]
    with run_server(args=[*reference, "--job-seconds", "30"], port=ref_port) as ref:
        env = portal_env(
            AGENT_GENERATOR_URL=ref.url,
            COPILOT_RUNNER_IN_PROCESS="true",
            COPILOT_LEASE_SECONDS="6",
        )
        daphne = [
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(web_port),
            "copilot.asgi:application",
        ]
        with run_server(args=daphne, port=web_port, env=env, ready_path="/admin/login/") as web:
            script = httpx.get(f"{web.url}/static/copilot/stream.js")
            assert script.status_code == 200
            assert "CopilotStream" in script.text
            css = httpx.get(f"{web.url}/static/copilot/portal.css")
            assert (css.status_code, css.headers["content-type"]) == (200, "text/css")

            # The runner in the web process starts with the server, not with a request.
            job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
            wait_for(
                lambda: GenerationJob.objects.filter(
                    pk=job.pk, status="running", lease_owner__contains=f":{web.pid}:"
                ).exists(),
                seconds=20,  # a lost wake costs one scan: half a lease
                what="the web process's runner to run the job",
                process=None,
            )
            started = time.monotonic()
            web.stop()  # SIGTERM, as a process manager stops it
            stopped_in = time.monotonic() - started
    job.refresh_from_db()
    assert (job.status, job.lease_owner) == ("running", "")  # released, resumable at once
    assert job.upstream_job_id
    assert stopped_in < 8, f"the server took {stopped_in:.1f}s to stop"
