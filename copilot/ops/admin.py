"""The Django admin for reviewing job history.

Jobs and events are written by machines (the runner, the services), so the admin shows them
read-only; the only changes it makes are the Retry and Cancel actions, through the services.
Login lockouts (django-axes' records) are shown the same way, with a Lift action.
"""

from __future__ import annotations

from axes.models import AccessAttempt, AccessLog
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import flatten, flatten_fieldsets
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from copilot.jobs import services
from copilot.jobs.exceptions import CopilotError, JobLimitReached
from copilot.jobs.models import ApiToken, GenerationJob, JobEvent
from copilot.ops.changelist import EstimatedCountPaginator, OwnerFilter
from copilot.ops.job_search import jobs_search
from copilot.web.display import format_elapsed, pretty_json


def json_pre(value: object) -> str:
    """JSON in a <pre>, escaped: upstream and user text is shown as text, never as HTML."""
    if value in (None, {}, []):
        return "—"
    text = pretty_json(value, sort_keys=True)
    # Styled by static/copilot/admin.css (a style="" attribute would break the CSP).
    return format_html('<pre class="copilot-json-pre">{}</pre>', text)


class ReadOnlyMixin:
    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        # Every staff member reviews job history (as in the portal, where staff see all jobs).
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class JobEventInline(ReadOnlyMixin, admin.TabularInline):
    model = JobEvent
    fields = ["seq", "type", "pretty_data", "created_at"]
    readonly_fields = flatten(fields)
    ordering = ["seq"]
    extra = 0
    can_delete = False

    @admin.display(description="data")
    def pretty_data(self, event: JobEvent) -> str:
        return json_pre(event.data)


@admin.register(GenerationJob)
class GenerationJobAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Job history, kept fast at a million jobs: no full count (an estimate where a total is
    shown), an owner filter typed in, a search where each kind of term uses an index
    (:mod:`copilot.ops.job_search`), and no date hierarchy (its year and month links are a
    DISTINCT over every job; the "created at" filter's ranges cost no query)."""

    list_display = ["id", "kind", "status", "owner", "created_at", "elapsed_display", "error_type"]
    list_filter = ["status", "kind", OwnerFilter, "created_at"]
    search_fields = ["id", "upstream_job_id", "owner__username", "request"]  # see below
    search_help_text = (
        "A job id or upstream id, the start of a username or email, or words of the request."
    )
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    #: Rendering a row is most of a changelist's time at any size (the SQL takes ~5 ms at a
    #: million jobs): 50 rows a page, as the portal's own list.
    list_per_page = 50
    list_select_related = ["owner"]
    actions = ["retry_jobs", "cancel_jobs"]
    inlines = [JobEventInline]
    fieldsets = [
        (None, {"fields": ["id", "owner", "kind", "status", "attempt", "upstream_job_id"]}),
        ("Timing", {"fields": ["created_at", "started_at", "finished_at", "elapsed_display"]}),
        ("Request and outcome", {"fields": ["pretty_request", "pretty_progress", "pretty_result"]}),
        ("Error", {"fields": ["error_type", "error_message", "cancel_requested_at"]}),
        ("Runner", {"fields": ["lease_owner", "lease_expires_at", "last_event_seq"]}),
    ]
    readonly_fields = flatten_fieldsets(fieldsets)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def action_checkbox(self, obj: GenerationJob) -> SafeString:
        """Django's row checkbox, the same HTML, without a widget template per row (a third
        of the changelist's rendering time) or the job's ``str()`` (its kind's label)."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" '
            'aria-label="Select this object for an action - job {}">',
            ACTION_CHECKBOX_NAME,
            obj.pk,
            obj.pk,
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """``search_fields`` only turns the box on; each term goes to its index instead."""
        return jobs_search(jobs=queryset, term=search_term), False

    @admin.display(description="elapsed")
    def elapsed_display(self, job: GenerationJob) -> str:
        return format_elapsed(job.elapsed)

    @admin.display(description="request")
    def pretty_request(self, job: GenerationJob) -> str:
        return json_pre(job.request)

    @admin.display(description="progress")
    def pretty_progress(self, job: GenerationJob) -> str:
        return json_pre(job.progress)

    @admin.display(description="result")
    def pretty_result(self, job: GenerationJob) -> str:
        return json_pre(job.result)

    def _act(self, request: HttpRequest, queryset: QuerySet, *, verb: str, service) -> None:
        done, refused = 0, []
        for job in queryset:
            try:
                service(job_id=job.id, by=request.user)
                done += 1
            except JobLimitReached as exc:  # names the owner; say which job too
                refused.append(f"job {job.id}: {exc}")
            except CopilotError as exc:
                refused.append(str(exc))
        if done:
            self.message_user(request, f"{verb} {done} job(s).", messages.SUCCESS)
        for reason in refused:
            self.message_user(
                request, f"Not {verb.lower()}: {reason.rstrip('.')}.", messages.WARNING
            )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<uuid:job_id>/retry/", view(self.retry_view), name="copilot_job_retry"),
            path("<uuid:job_id>/cancel/", view(self.cancel_view), name="copilot_job_cancel"),
            *super().get_urls(),
        ]

    def _act_on_one(self, request: HttpRequest, job_id, *, verb: str, service):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = get_object_or_404(GenerationJob, pk=job_id)
        if not self.has_view_permission(request, job):
            return HttpResponseRedirect(reverse("admin:index"))
        self._act(request, GenerationJob.objects.filter(pk=job.pk), verb=verb, service=service)
        return HttpResponseRedirect(reverse("admin:copilot_generationjob_change", args=[job.pk]))

    def retry_view(self, request: HttpRequest, job_id):
        return self._act_on_one(request, job_id, verb="Retried", service=services.job_retry)

    def cancel_view(self, request: HttpRequest, job_id):
        return self._act_on_one(request, job_id, verb="Cancelled", service=services.job_cancel)

    @admin.action(description="Retry the selected failed, timed-out or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, verb="Retried", service=services.job_retry)

    @admin.action(description="Cancel the selected active jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, verb="Cancelled", service=services.job_cancel)


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """API tokens: staff see who holds one, when it was last used and when it expires, and
    revoke one by deleting it.

    Tokens are made only by ``manage.py create_api_token`` (the key is shown once, never
    stored), so the admin cannot add or change one. Whoever may view tokens (every active
    staff member, as for job history) may also revoke them: revoking only takes access away.
    """

    list_display = ["name", "user", "created_at", "last_used_at", "expires", "expired"]
    list_filter = [("user", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "user__username"]
    readonly_fields = ["user", "name", "created_at", "last_used_at", "expires_at"]
    exclude = ["key_hash"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_view_permission(request, obj)

    @admin.display(description="expires", ordering="expires_at", empty_value="never")
    def expires(self, token: ApiToken):
        return token.expires_at

    @admin.display(description="expired", boolean=True)
    def expired(self, token: ApiToken) -> bool:
        return token.is_expired()


class StaffModuleMixin(ReadOnlyMixin):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff


@admin.register(AccessAttempt)
class LoginFailureAdmin(StaffModuleMixin, admin.ModelAdmin):
    """Failed logins per username (django-axes), read-only, with the Lift action.

    Lifting removes the username's failures, as ``manage.py axes_reset_username NAME`` does:
    its next login is checked afresh. Every staff member may lift, as they may retry a job.
    """

    list_display = [
        "username",
        "failures_since_start",
        "locked_out",
        "attempt_time",
        "ip_address",
        "path_info",
    ]
    list_filter = ["attempt_time", "path_info"]
    search_fields = ["username"]
    date_hierarchy = "attempt_time"
    ordering = ["-attempt_time"]
    fields = [
        "username",
        "failures_since_start",
        "attempt_time",
        "path_info",
        "ip_address",
        "user_agent",
        "http_accept",
    ]
    readonly_fields = flatten(fields)
    actions = ["lift_lockouts"]

    @admin.display(description="locked out", boolean=True)
    def locked_out(self, attempt: AccessAttempt) -> bool:
        """At the limit within the cool-off (django-axes adds up a username's rows: usually one)."""
        recent = attempt.attempt_time >= timezone.now() - settings.AXES_COOLOFF_TIME
        return recent and attempt.failures_since_start >= settings.AXES_FAILURE_LIMIT

    @admin.action(description="Lift the lockout of the selected usernames")
    def lift_lockouts(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Never None: django-axes' reset with no username would remove everyone's failures.
        usernames = sorted({name for name in queryset.values_list("username", flat=True) if name})
        for username in usernames:
            axes_reset(username=username)
        self.message_user(request, f"Lifted: {', '.join(usernames)}.", messages.SUCCESS)


@admin.register(AccessLog)
class LoginLogAdmin(StaffModuleMixin, admin.ModelAdmin):
    """Successful logins and their logouts (django-axes), read-only."""

    list_display = ["username", "attempt_time", "logout_time", "ip_address", "path_info"]
    list_filter = ["attempt_time", "path_info"]
    search_fields = ["username"]
    date_hierarchy = "attempt_time"
    ordering = ["-attempt_time"]
    fields = ["username", "attempt_time", "logout_time", "path_info", "ip_address", "user_agent"]
    readonly_fields = flatten(fields)
