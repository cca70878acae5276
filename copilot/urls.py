"""URL routes of the portal (the event stream is routed in copilot.asgi, beside these)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
