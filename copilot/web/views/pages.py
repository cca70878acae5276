"""The portal's HTML pages: the job list, a new job, a job's page and its buttons.

Every page needs a login; a job that is not the user's (and the user is not staff) is a 404,
as is an unknown one, so a page never tells whether someone else's job exists. State changes
are POST only, with Django's CSRF check, and go through :mod:`copilot.jobs.services`.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from copilot.jobs import services
from copilot.jobs.exceptions import (
    IllegalTransition,
    InvalidJobRequest,
    JobLimitReached,
    JobNotFound,
)
from copilot.jobs.job_requests import MAX_TEXT_CHARS
from copilot.jobs.keyset import Cursor, InvalidCursor, cursor_decode, jobs_keyset_page
from copilot.jobs.models import GenerationJob
from copilot.jobs.presenters import event_line, job_goal
from copilot.jobs.selectors import job_get
from copilot.web import display
from copilot.web.agent_diagram import agent_diagram
from copilot.web.forms import AnswerForm, JobFilterForm, NewJobForm

logger = logging.getLogger(__name__)

Kind = GenerationJob.Kind
PAGE_SIZE = 50


def _job_or_404(request: HttpRequest, job_id: uuid.UUID) -> GenerationJob:
    try:
        return job_get(job_id=job_id, user=request.user)
    except JobNotFound:
        raise Http404("No such job.") from None


@login_required
@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    """The user's jobs, newest first (staff: everyone's), filtered by GET parameters; Newer and
    Older links carry a keyset cursor (:mod:`copilot.jobs.keyset`), so deep pages stay fast."""
    jobs = GenerationJob.objects.owned_by(request.user).select_related("owner")
    filters = JobFilterForm(request.GET)
    if not request.user.is_staff:
        del filters.fields["owner"]
    if filters.is_valid():
        wanted = filters.cleaned_data
        if wanted.get("status"):
            jobs = jobs.filter(status=wanted["status"])
        if wanted.get("kind"):
            jobs = jobs.filter(kind=wanted["kind"])
        if wanted.get("owner"):
            jobs = jobs.filter(owner__username=wanted["owner"])
    status = 200
    try:
        cursor = cursor_decode(request.GET["cursor"]) if request.GET.get("cursor") else None
    except InvalidCursor:
        messages.error(request, "That page link is not valid; here are the newest jobs.")
        cursor, status = None, 400
    page = jobs_keyset_page(jobs=jobs, cursor=cursor, size=PAGE_SIZE)
    query = request.GET.copy()
    for stale in ("page", "cursor"):  # ?page= was the old, numbered pagination
        query.pop(stale, None)
    rows = [
        {"job": job, "goal": job_goal(job), "elapsed": display.format_elapsed(job.elapsed)}
        for job in page.jobs
    ]
    return render(
        request,
        "copilot/job_list.html",
        {
            "title": "All jobs" if request.user.is_staff else "My jobs",
            "rows": rows,
            "newer_query": _with_cursor(query, page.newer),
            "older_query": _with_cursor(query, page.older),
            "filters": filters,
            "query": query.urlencode(),
            "show_owner": request.user.is_staff,
        },
        status=status,
    )


def _with_cursor(query: QueryDict, cursor: Cursor | None) -> str:
    """The list's query string for the page at ``cursor`` ("" when there is no such page)."""
    if cursor is None:
        return ""
    linked = query.copy()
    linked["cursor"] = cursor.encode()
    return linked.urlencode()


@login_required
@require_http_methods(["GET", "POST"])
def job_new(request: HttpRequest) -> HttpResponse:
    """A form per kind (``?kind=``); ``?goal=`` pre-fills the text (a suggested goal)."""
    kind = request.POST.get("kind") or request.GET.get("kind") or Kind.DECOMPOSE
    if kind not in Kind.values:
        kind = Kind.DECOMPOSE
    email: str = getattr(request.user, "email", "")  # "Email me when it's done" goes there
    if request.method == "POST":
        form = NewJobForm(request.POST, request.FILES, kind=kind, email=email)
        if form.is_valid():
            try:
                job = services.job_submit(
                    user=request.user,
                    kind=kind,
                    payload=form.payload(),
                    notify_email=form.cleaned_data["notify_email"],
                )
            except JobLimitReached as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Your job is queued.")
                return redirect("job_detail", job_id=job.id)
    else:
        form = NewJobForm(
            initial={"text": request.GET.get("goal", "")[:MAX_TEXT_CHARS]},
            kind=kind,
            email=email,
        )
    tabs = [
        {
            "kind": value,
            "label": label,
            "url": f"{reverse('job_new')}?kind={value}",
            "active": value == kind,
        }
        for value, label in Kind.choices
    ]
    return render(
        request,
        "copilot/job_new.html",
        {"title": "New job", "form": form, "kind": kind, "tabs": tabs},
    )


def _render_job(
    request: HttpRequest,
    job: GenerationJob,
    *,
    answer_form: AnswerForm | None = None,
) -> HttpResponse:
    result = job.result if isinstance(job.result, dict) else {}
    result_type = result.get("type")
    if result_type == "clarifying_questions" and answer_form is None:
        answer_form = AnswerForm(questions=result.get("questions") or [])
    agent = display.result_agent(job)
    request_agent = display.job_request_agent(job)
    progress = job.progress or {}
    percent = 100 if job.status == GenerationJob.Status.COMPLETED else progress.get("percent")
    if not isinstance(percent, int | float):
        percent = None
    context = {
        "title": f"{job.get_kind_display()} job",
        "job": job,
        "goal": job_goal(job),
        "request_agent_json": display.pretty_json(request_agent) if request_agent else "",
        "events": [
            {"seq": e.seq, "type": e.type, "line": event_line(e)}
            for e in job.events.order_by("seq")
        ],
        "percent": percent,
        "title_state": display.title_state(job, percent=percent),
        "phase": progress.get("phase") or "",
        "elapsed": display.format_elapsed(job.elapsed),
        "can_stop": not job.is_terminal and job.cancel_requested_at is None,
        "can_retry": job.is_retryable,
        "failure": display.error_sentence(job.error_type) if job.is_retryable else "",
        "result": result,
        "result_type": result_type,
        "result_error": display.error_sentence(result.get("error_type"))
        if result_type == "error"
        else "",
        "answer_form": answer_form,
        "agent_json": display.pretty_json(agent) if agent else "",
        "agent_diagram": agent_diagram(agent) if agent else None,
        "stream": not job.is_terminal,
        "events_url": f"/jobs/{job.id}/events",
        "heartbeat_ms": int(settings.COPILOT_HEARTBEAT_SECONDS * 1000),
        "new_job_url": reverse("job_new"),
    }
    return render(request, "copilot/job_detail.html", context)


@login_required
@require_GET
def job_detail(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """A job's status, progress, event log (live while it runs) and result."""
    return _render_job(request, _job_or_404(request, job_id))


@login_required
@require_POST
def job_cancel(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """The Stop button."""
    job = _job_or_404(request, job_id)
    try:
        job = services.job_cancel(job_id=job.id, by=request.user)
    except IllegalTransition:
        messages.warning(request, "This job has already ended; there is nothing to stop.")
    else:
        if job.is_terminal:
            messages.success(request, "The job was stopped.")
        else:
            messages.success(request, "Stop requested; the job ends in a moment.")
    return redirect("job_detail", job_id=job.id)


@login_required
@require_POST
def job_retry(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """The Retry button: a new attempt of a failed, timed-out or cancelled job."""
    job = _job_or_404(request, job_id)
    try:
        job = services.job_retry(job_id=job.id, by=request.user)
    except IllegalTransition:
        messages.warning(request, "Only a failed, timed-out or stopped job can be retried.")
    except JobLimitReached as exc:
        messages.error(request, f"Not retried: {exc}")
    else:
        messages.success(request, f"Retrying: attempt {job.attempt} is queued.")
    return redirect("job_detail", job_id=job.id)


@login_required
@require_POST
def job_answer(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """Answers to clarifying questions start a follow-up job: the request plus the answers."""
    job = _job_or_404(request, job_id)
    result = job.result if isinstance(job.result, dict) else {}
    if job.status != GenerationJob.Status.COMPLETED or result.get("type") != (
        "clarifying_questions"
    ):
        messages.warning(request, "This job has no questions to answer.")
        return redirect("job_detail", job_id=job.id)
    form = AnswerForm(request.POST, questions=result.get("questions") or [])
    if form.is_valid():
        try:
            follow_up = services.job_submit(
                user=request.user, kind=job.kind, payload=form.follow_up_payload(job=job)
            )
        except InvalidJobRequest as exc:
            for message in exc.errors.values():
                form.add_error(None, message)
        except JobLimitReached as exc:
            form.add_error(None, str(exc))
        else:
            logger.info("follow-up job id=%s answers=%s", follow_up.id, job.id)
            messages.success(request, "Thank you. A follow-up job with your answers is queued.")
            return redirect("job_detail", job_id=follow_up.id)
    return _render_job(request, job, answer_form=form)


@login_required
@require_POST
def job_generate(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """Turn a decompose job's instructions into a generate job (the next step of the flow)."""
    job = _job_or_404(request, job_id)
    result = job.result if isinstance(job.result, dict) else {}
    if job.status != GenerationJob.Status.COMPLETED or result.get("type") != "instructions":
        messages.warning(request, "This job has no instructions to generate an agent from.")
        return redirect("job_detail", job_id=job.id)
    try:
        generate = services.job_submit(
            user=request.user, kind=Kind.GENERATE, payload={"instructions": result}
        )
    except (InvalidJobRequest, JobLimitReached) as exc:
        messages.error(request, str(exc))
        return redirect("job_detail", job_id=job.id)
    messages.success(request, "A job generating the agent from these steps is queued.")
    return redirect("job_detail", job_id=generate.id)


@login_required
@require_GET
def job_agent_download(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """The generated agent as a JSON file."""
    agent = display.result_agent(_job_or_404(request, job_id))
    if agent is None:
        raise Http404("This job has no generated agent.")
    response = HttpResponse(
        display.pretty_json(agent), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="agent-{job_id}.json"'
    return response
