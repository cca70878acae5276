"""URL routes of the portal (the event stream is routed in copilot.asgi, beside these)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from copilot.web.views import pages

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", RedirectView.as_view(pattern_name="job_list"), name="home"),
    path("jobs/", pages.job_list, name="job_list"),
    path("jobs/new/", pages.job_new, name="job_new"),
    path("jobs/<uuid:job_id>/", pages.job_detail, name="job_detail"),
    path("jobs/<uuid:job_id>/cancel/", pages.job_cancel, name="job_cancel"),
    path("jobs/<uuid:job_id>/retry/", pages.job_retry, name="job_retry"),
    path("jobs/<uuid:job_id>/answer/", pages.job_answer, name="job_answer"),
    path("jobs/<uuid:job_id>/generate/", pages.job_generate, name="job_generate"),
    path("jobs/<uuid:job_id>/agent.json", pages.job_agent_download, name="job_agent_json"),
    # The JSON API (django-ninja, namespace "api"): /api/jobs/…, /api/docs, /api/openapi.json.
    path("api/", include("copilot.web.api.urls")),
]

# A database outage met outside a view (where the middleware cannot catch it) is a 503 too.
handler500 = "copilot.web.db_unavailable.server_error"
