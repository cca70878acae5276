"""End to end: a ``runworker`` process follows jobs on a live reference Agent Generator, with
``EMAIL_URL`` pointing at a folder (Django's file backend), and its owner gets exactly one
email per ended attempt, with the job's absolute link: a failed attempt and its retry's
completion make two; a cancel the owner asked for makes none."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from copilot.jobs import services
from copilot.jobs.models import GenerationJob
from tests.copilot.runner.test_runner import GOAL
from tests.support.live import free_port, run_server
from tests.support.portal import portal_env, portal_process
from tests.support.waiting import wait_for

Status = GenerationJob.Status
BASE = "https://portal.example.com"

#: What Django's file backend writes after each message.
SEPARATOR = b"\n" + b"-" * 79 + b"\n"


def mails_in(folder: Path) -> list[EmailMessage]:
    """Every message the file backend wrote to ``folder`` (one file per send)."""
    mails = []
    for path in sorted(folder.glob("*.log")):
        for chunk in path.read_bytes().split(SEPARATOR):
            if chunk.strip():
                mails.append(email.message_from_bytes(chunk, policy=email.policy.default))
    return mails


def about(mails: list[EmailMessage], job: GenerationJob) -> list[EmailMessage]:
    link = f"{BASE}/jobs/{job.id}/"
    return [m for m in mails if link in m.get_body(preferencelist=("plain",)).get_content()]


def reference_args(port: int, *extra: str) -> list[str]:
    return ["-m", "agent_generator.reference", "--host", "127.0.0.1", "--port", str(port), *extra]


@pytest.mark.slow
@pytest.mark.alldb
@pytest.mark.django_db(transaction=True)
def test_one_email_per_ended_attempt_from_a_real_runner(django_user_model, tmp_path):
    owner = django_user_model.objects.create_user(
        username="dana", email="dana@example.com", password="dana-pass-123"
    )
    outbox = tmp_path / "mail"
    port = free_port()
    env = portal_env(
        AGENT_GENERATOR_URL=f"http://127.0.0.1:{port}",
        EMAIL_URL=f"filemail:///{outbox}",
        DEFAULT_FROM_EMAIL="portal@example.com",
        PORTAL_BASE_URL=BASE,
    )

    def submit() -> GenerationJob:
        return services.job_submit(
            user=owner, kind="decompose", payload={"description": GOAL}, notify_email=True
        )

    def ended(job: GenerationJob) -> GenerationJob | None:
        job.refresh_from_db()
        return job if job.is_terminal else None

    with portal_process("runworker", "agent-generator", env=env) as worker:
        # Attempt 1 fails: this Agent Generator fails every job.
        with run_server(
            args=reference_args(port, "--job-seconds", "0.3", "--faults", "fail=x"), port=port
        ):
            job = submit()
            job = wait_for(lambda: ended(job), seconds=30, what="attempt 1", process=worker)
            assert job.status == Status.FAILED
            wait_for(lambda: mails_in(outbox), seconds=15, what="its email", process=worker)

        with run_server(args=reference_args(port, "--job-seconds", "3"), port=port):
            # A job its owner cancels while it runs: no email.
            stopped = submit()
            wait_for(
                lambda: GenerationJob.objects.filter(pk=stopped.pk, status=Status.RUNNING).exists(),
                seconds=30,
                what="the job to run",
                process=worker,
            )
            services.job_cancel(job_id=stopped.id, by=owner)
            stopped = wait_for(lambda: ended(stopped), seconds=30, what="the cancel")
            assert stopped.status == Status.CANCELLED
            # The runner's sender has seen that end (and claimed it) before anything below.
            wait_for(
                lambda: GenerationJob.objects.filter(pk=stopped.pk, notified_attempt=1).exists(),
                seconds=15,
                what="the sender to pass the cancel",
                process=worker,
            )

            # Attempt 2 of the failed job completes: a second email.
            services.job_retry(job_id=job.id, by=owner)
            job = wait_for(
                lambda: GenerationJob.objects.filter(
                    pk=job.pk, attempt=2, status__in=GenerationJob.TERMINAL_STATUSES
                ).first(),
                seconds=30,
                what="attempt 2",
                process=worker,
            )
            assert job.status == Status.COMPLETED
            wait_for(
                lambda: len(mails_in(outbox)) >= 2, seconds=15, what="its email", process=worker
            )

    mails = mails_in(outbox)
    assert len(mails) == 2, [m["Subject"] for m in mails]
    first, second = about(mails, job)
    assert about(mails, stopped) == []
    assert str(first["Subject"]).strip().startswith("✗ Failed: Decompose a goal — Every morning")
    assert str(second["Subject"]).strip().startswith("✓ Completed: Decompose a goal — Every")
    for mail in (first, second):
        assert mail["To"] == "dana@example.com" and mail["From"] == "portal@example.com"
        html = mail.get_body(preferencelist=("html",)).get_content()
        assert f'<a href="{BASE}/jobs/{job.id}/">' in html
    assert "(attempt 2)" in second.get_body(preferencelist=("plain",)).get_content()
    job.refresh_from_db()
    assert (job.notified_attempt, job.status) == (2, Status.COMPLETED)
