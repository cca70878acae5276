"""The owner's email when an attempt ends: which ends mail, once each, what it says, and that a
mail server that fails is retried, logged, and never changes the job."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from django.core import mail
from django.core.mail.backends import locmem
from django.db import transaction

from copilot.jobs import emails, notify, services, transitions
from copilot.jobs.models import GenerationJob
from copilot.jobs.transitions import Transition
from tests.support.live import free_port

Status = GenerationJob.Status
pytestmark = pytest.mark.alldb

GOAL = "Every morning at 8am, fetch the top tech news <b>& email</b> a summary to me"
BASE = "https://portal.example.com"
RESULT = {"type": "instructions", "steps": [{"description": "a"}, {"description": "b"}]}


class FlakyBackend(locmem.EmailBackend):
    """The in-memory backend behind a mail server that refuses the first ``failures`` sends."""

    failures = 0

    def send_messages(self, email_messages: Any) -> int:
        if FlakyBackend.failures > 0:
            FlakyBackend.failures -= 1
            raise ConnectionRefusedError("the mail server is down")
        return super().send_messages(email_messages)


@pytest.fixture(autouse=True)
def _base_url(settings):
    settings.PORTAL_BASE_URL = BASE


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user(
        username="carol", email="carol@example.com", password="carol-pass-123"
    )


def started(owner, *, notify_email: bool = True, goal: str = GOAL) -> GenerationJob:
    job = services.job_submit(
        user=owner, kind="decompose", payload={"description": goal}, notify_email=notify_email
    )
    job = transitions.job_mark_submitting(job=job, publish=False).job
    return transitions.job_mark_running(job=job, upstream_job_id="up-1", publish=False).job


def completed(job: GenerationJob) -> Transition:
    return transitions.job_complete(job=job, result=RESULT, publish=False)


def end_of(change: Transition) -> notify.AttemptEnd:
    return notify.attempt_end(job=change.job, event_seq=change.event.seq)


ENDS = {
    "complete": completed,
    "fail": lambda job: transitions.job_fail(
        job=job, error_type="job_failed", error_message="The model gave up.\nTrace…", publish=False
    ),
    "time_out": lambda job: transitions.job_time_out(
        job=job, error_message="Not within 30 minutes.", publish=False
    ),
    "cancel_confirmed": lambda job: transitions.job_cancel_confirmed(
        job=job, error_message="Cancelled upstream.", publish=False
    ),
}


# -- when: the hook in the transitions --------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", ENDS)
def test_every_end_of_a_job_that_asked_queues_one_email_on_commit(
    owner, name, django_capture_on_commit_callbacks
):
    asked, silent = started(owner), started(owner, notify_email=False)
    with django_capture_on_commit_callbacks() as callbacks:
        ENDS[name](asked)
    assert len(callbacks) == 1
    with django_capture_on_commit_callbacks() as callbacks:
        ENDS[name](silent)
    assert callbacks == []


@pytest.mark.django_db
def test_no_email_is_queued_by_a_change_that_does_not_end_an_attempt(
    owner, django_capture_on_commit_callbacks
):
    job = services.job_submit(
        user=owner, kind="decompose", payload={"description": GOAL}, notify_email=True
    )
    with django_capture_on_commit_callbacks() as callbacks:
        job = transitions.job_mark_submitting(job=job, publish=False).job
        job = transitions.job_mark_running(job=job, upstream_job_id="up-1", publish=False).job
        job = transitions.job_fail(job=job, error_type="x", error_message="y", publish=False).job
        transitions.job_requeue(job=job, by="carol", publish=False)
    assert len(callbacks) == 1  # the failure's, not the start's, the run's or the retry's


@pytest.mark.django_db
def test_nothing_is_queued_for_a_change_rolled_back(owner, django_capture_on_commit_callbacks):
    job = started(owner)
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        completed(job)
        raise RuntimeError("rolled back")
    assert callbacks == []
    job.refresh_from_db()
    assert job.status == Status.RUNNING


@pytest.mark.django_db(transaction=True)
def test_after_commit_the_email_goes_out_from_a_thread_of_its_own(owner, mailoutbox):
    job = completed(started(owner)).job
    deadline = time.monotonic() + 10
    while not mailoutbox and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["carol@example.com"]
    assert f"{BASE}/jobs/{job.id}/" in mailoutbox[0].body
    job.refresh_from_db()
    assert job.notified_attempt == 1 and job.status == Status.COMPLETED


# -- once, and for whom -----------------------------------------------------------------------


@pytest.mark.django_db
def test_one_email_per_attempt_however_often_it_is_asked(owner, mailoutbox):
    change = completed(started(owner))
    end = end_of(change)
    assert notify.job_end_notify(end=end) is True
    assert notify.job_end_notify(end=end) is False  # claimed: a second runner, a takeover
    assert len(mailoutbox) == 1
    assert GenerationJob.objects.get(pk=change.job.pk).notified_attempt == 1


@pytest.mark.django_db
def test_a_retried_job_mails_once_per_attempt(owner, mailoutbox):
    failed = ENDS["fail"](started(owner))
    assert notify.job_end_notify(end=end_of(failed)) is True
    job = services.job_retry(job_id=failed.job.id, by=owner)
    job = transitions.job_mark_submitting(job=job, publish=False).job
    job = transitions.job_mark_running(job=job, upstream_job_id="up-2", publish=False).job
    second = completed(job)
    assert notify.job_end_notify(end=end_of(second)) is True
    assert notify.job_end_notify(end=end_of(failed)) is False  # attempt 1 was mailed already
    assert [m.subject[0] for m in mailoutbox] == ["✗", "✓"]
    assert "(attempt 2)" in mailoutbox[1].body


@pytest.mark.django_db
def test_an_email_for_an_attempt_a_quick_retry_replaced_still_tells_that_attempt(owner, mailoutbox):
    failed = ENDS["fail"](started(owner))
    services.job_retry(job_id=failed.job.id, by=owner)  # before the mail went out
    assert notify.job_end_notify(end=end_of(failed)) is True
    assert mailoutbox[0].subject.startswith("✗ Failed: Decompose a goal")
    assert "The model gave up." in mailoutbox[0].body


@pytest.mark.django_db
def test_no_email_for_a_cancel_the_owner_asked_for(owner, mailoutbox):
    queued = services.job_submit(
        user=owner, kind="decompose", payload={"description": GOAL}, notify_email=True
    )
    services.job_cancel(job_id=queued.id, by=owner)
    running = started(owner)
    services.job_cancel(job_id=running.id, by=owner)  # asks the runner, which confirms:
    confirmed = transitions.job_cancel_confirmed(
        job=GenerationJob.objects.get(pk=running.pk), error_message="Cancelled.", publish=False
    )
    for job_id in (queued.id, running.id):
        job = GenerationJob.objects.get(pk=job_id)
        last = job.events.order_by("-seq").first()
        end = notify.attempt_end(job=job, event_seq=last.seq)
        assert notify.job_end_notify(end=end) is False
    assert confirmed.job.status == Status.CANCELLED
    assert mailoutbox == []


@pytest.mark.django_db
def test_an_email_for_a_cancel_someone_else_made(owner, staff_user, mailoutbox):
    job = started(owner)
    services.job_cancel(job_id=job.id, by=staff_user)
    confirmed = transitions.job_cancel_confirmed(
        job=GenerationJob.objects.get(pk=job.pk), error_message="Cancelled.", publish=False
    )
    assert notify.job_end_notify(end=end_of(confirmed)) is True
    assert mailoutbox[0].subject.startswith("■ Cancelled: ")


@pytest.mark.django_db
def test_an_owner_without_an_address_gets_nothing(user, mailoutbox):
    change = completed(started(user))
    assert notify.job_end_notify(end=end_of(change)) is False
    assert mailoutbox == []


# -- what it says -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "stored", "goal"),
    [
        # The same goal the job page shows (copilot.jobs.presenters.job_goal), on one line.
        ("generate", {"instructions": {"steps": [{"description": "Fetch news"}]}}, "Fetch news"),
        ("generate", {"instructions": {"goal": "Mail\n  me"}}, "Mail me"),
        ("retired", {"description": "x"}, ""),  # a stored kind no longer known: no goal
    ],
)
def test_the_email_s_goal_is_the_page_s(owner, kind, stored, goal):
    job = GenerationJob.objects.create(owner=owner, kind=kind, request=stored)
    assert emails.job_text(job) == goal
    subject = emails.job_end_subject(job=job, status="failed")
    assert subject.endswith(f" — {goal}") if goal else "—" not in subject


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "subject", "line"),
    [
        ("complete", "✓ Completed: ", "Result: instructions (2 steps)"),
        ("fail", "✗ Failed: ", "Why: The model gave up."),
        ("time_out", "⏱ Timed out: ", "Why: Not within 30 minutes."),
    ],
)
def test_the_email_names_kind_end_summary_and_the_absolute_link(
    owner, mailoutbox, settings, name, subject, line
):
    settings.DEFAULT_FROM_EMAIL = "Agent Copilot <portal@example.com>"
    change = ENDS[name](started(owner))
    notify.job_end_notify(end=end_of(change))
    message = mailoutbox[0]
    assert message.subject == (
        f"{subject}Decompose a goal — Every morning at 8am, fetch the top tech…"
    )
    assert message.from_email == "Agent Copilot <portal@example.com>"
    assert line in message.body.splitlines()
    assert "Trace…" not in message.body  # one line of the error
    link = f"{BASE}/jobs/{change.job.id}/"
    assert f"See it: {link}" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert f'<a href="{link}">' in html
    assert line in html


@pytest.mark.django_db
def test_user_text_is_text_in_the_html_part(owner, mailoutbox):
    goal = 'Post <script>alert("x")</script> & "quotes" to Slack'
    notify.job_end_notify(end=end_of(completed(started(owner, goal=goal))))
    message = mailoutbox[0]
    html = message.alternatives[0][0]
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in html
    assert f"You asked: {goal}" in message.body  # the text part is plain text
    assert "\n" not in message.subject and "<script>" in message.subject


@pytest.mark.django_db
def test_without_a_base_url_the_email_says_where_to_look(owner, mailoutbox, settings):
    settings.PORTAL_BASE_URL = ""
    change = completed(started(owner))
    notify.job_end_notify(end=end_of(change))
    assert f"See it in your jobs on the portal (job {change.job.id})." in mailoutbox[0].body
    assert "href" not in mailoutbox[0].alternatives[0][0]


# -- a mail server that fails -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_send_is_retried_and_logged(owner, settings, caplog):
    settings.EMAIL_BACKEND = f"{__name__}.FlakyBackend"
    FlakyBackend.failures = 2
    change = completed(started(owner))
    with caplog.at_level(logging.INFO, logger="copilot.jobs.notify"):
        assert notify.job_end_notify(end=end_of(change), retry_delays=(0, 0, 0)) is True
    assert len(mail.outbox) == 1
    tries = [r.getMessage() for r in caplog.records if "job email failed" in r.getMessage()]
    assert [t.split("try=")[1][0] for t in tries] == ["1", "2"]


@pytest.mark.django_db
def test_a_mail_server_that_stays_down_is_given_up_and_the_job_is_unchanged(
    owner, settings, caplog
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens
    settings.EMAIL_TIMEOUT = 2
    change = completed(started(owner))
    before = GenerationJob.objects.values().get(pk=change.job.pk)
    with caplog.at_level(logging.INFO, logger="copilot.jobs.notify"):
        assert notify.job_end_notify(end=end_of(change), retry_delays=(0, 0)) is False
    given_up = [r for r in caplog.records if "given up" in r.getMessage()]
    assert len(given_up) == 1 and given_up[0].levelno == logging.ERROR
    assert "tries=3" in given_up[0].getMessage()
    after = GenerationJob.objects.values().get(pk=change.job.pk)
    assert after == {**before, "notified_attempt": 1}
