"""The API's URLs: django-ninja's, with a JSON 404 for every other path under ``/api/``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from copilot.web.api.errors import NOT_FOUND, detail_response
from copilot.web.api.main import api


@csrf_exempt  # nothing here to protect; a POST is a 404 like any other
def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """No such API path: JSON, never Django's HTML 404 page (whatever the method)."""
    return detail_response(api, request, status=404, detail=NOT_FOUND)


urlpatterns = [
    path("", not_found),  # django-ninja's root view only raises Http404 (Django's page)
    path("", api.urls),
    re_path(r"^(?P<rest>.*)$", not_found),
]
