"""The embedded Agent Generator keeps its jobs in a file: a job survives a killed web process."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from copilot import config
from copilot.config import ConfigError
from copilot.jobs import services
from copilot.jobs.models import GenerationJob, JobEvent
from copilot.runner import upstream
from tests.copilot.runner.test_runner_recovery import GOAL
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env
from tests.support.waiting import wait_for

Status = GenerationJob.Status
STORE = "COPILOT_EMBEDDED_AGENT_GENERATOR_STORE"


def _store(tmp_path: Path, value: str | None) -> Path | None:
    env = {"DEBUG": "true"} | ({} if value is None else {STORE: value})
    return config.load(env, base_dir=tmp_path).embedded_agent_generator_store


def test_the_store_setting_defaults_to_a_file_under_var(tmp_path: Path) -> None:
    assert _store(tmp_path, None) == tmp_path / "var" / "agent-generator.sqlite3"
    assert _store(tmp_path, "  ") == tmp_path / "var" / "agent-generator.sqlite3"
    assert _store(tmp_path, "jobs/ag.db") == tmp_path / "jobs" / "ag.db"
    assert _store(tmp_path, "/srv/ag.db") == Path("/srv/ag.db")
    assert _store(tmp_path, "memory") is None
    assert _store(tmp_path, "MEMORY") is None


def test_a_directory_as_the_store_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    with pytest.raises(ConfigError) as refused:
        _store(tmp_path, "var")
    assert str(refused.value).startswith(f"{STORE}='var' is a directory")
    assert "\n" not in str(refused.value)


@pytest.fixture
def fresh_embedded_service():
    upstream.embedded_service.cache_clear()
    yield upstream.embedded_service
    if upstream.embedded_service.cache_info().currsize:
        upstream.embedded_service().close()
    upstream.embedded_service.cache_clear()


def test_the_embedded_service_makes_its_folder_and_file(
    settings, tmp_path: Path, fresh_embedded_service
) -> None:
    settings.COPILOT_EMBEDDED_AGENT_GENERATOR_STORE = tmp_path / "var" / "ag.sqlite3"
    service = fresh_embedded_service()
    assert service.settings.store_path == tmp_path / "var" / "ag.sqlite3"
    assert (tmp_path / "var" / "ag.sqlite3").is_file()


def test_the_embedded_service_in_memory_makes_no_file(
    settings, tmp_path: Path, fresh_embedded_service
) -> None:
    settings.COPILOT_EMBEDDED_AGENT_GENERATOR_STORE = None
    assert fresh_embedded_service().settings.store_path is None


def test_an_embedded_store_that_cannot_be_opened_is_a_config_error(
    settings, tmp_path: Path, fresh_embedded_service
) -> None:
    (tmp_path / "not-a-folder").write_text("a file")
    settings.COPILOT_EMBEDDED_AGENT_GENERATOR_STORE = tmp_path / "not-a-folder" / "ag.sqlite3"
    with pytest.raises(ImproperlyConfigured, match=f"^{STORE}: "):
        fresh_embedded_service()


def _daphne(port: int) -> list[str]:
    return ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot.asgi:application"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_job_running_on_the_embedded_service_completes_after_a_sigkill(user, tmp_path):
    store = tmp_path / "agent-generator.sqlite3"
    env = portal_env(
        DEBUG="true",
        AGENT_GENERATOR_URL="embedded",
        COPILOT_RUNNER_IN_PROCESS="true",
        COPILOT_LEASE_SECONDS="2",
        COPILOT_RUNNER_DEAD_SECONDS="1",
        COPILOT_EMBEDDED_AGENT_GENERATOR_STORE=str(store),
    )
    port = free_port()
    with run_server(args=_daphne(port), port=port, env=env, ready_path="/admin/login/") as web:
        job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
        running = wait_for(
            lambda: GenerationJob.objects.filter(
                pk=job.pk, status=Status.RUNNING, lease_owner__contains=f":{web.pid}:"
            ).first(),
            seconds=20,
            what="the web process's runner to submit the job to the embedded service",
            process=web,
        )
        web.kill()  # SIGKILL: no lease released, the embedded service's memory gone
    assert running.upstream_job_id
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT id FROM reference_job").fetchall()
    assert rows == [(running.upstream_job_id,)]

    port = free_port()
    with run_server(args=_daphne(port), port=port, env=env, ready_path="/admin/login/") as web:
        # A reference job runs about a minute from its submit, before the kill.
        done = wait_for(
            lambda: GenerationJob.objects.filter(
                pk=job.pk, status__in=GenerationJob.TERMINAL_STATUSES
            ).first(),
            seconds=90,
            what="the restarted process to finish the job",
            process=web,
        )
        output = web.output()
    assert (done.status, done.error_type) == (Status.COMPLETED, ""), output
    assert done.upstream_job_id == running.upstream_job_id
    assert done.result and done.result["type"]  # the result decided at the first submit
    statuses = [
        event.data["status"]
        for event in JobEvent.objects.filter(job=job, type=JobEvent.Type.STATUS)
    ]
    assert statuses.count(Status.SUBMITTING) == 1, statuses
    assert "job_not_found" not in str(list(JobEvent.objects.filter(job=job).values("data")))
    assert "job loaded" in output  # the restarted service read the job from its file
