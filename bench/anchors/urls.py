"""``/es/events/?channel=K``: django-eventstream's own view, as its docs mount it."""

from django.urls import include, path

urlpatterns = [path("es/events/", include("django_eventstream.urls"))]
