"""Settings of the anchors' server: django-eventstream and a plain Channels consumer.

Bench only. ``DATABASE_URL`` names the run's SQLite file; ``BENCH_EVENTSTREAM_STORAGE=1``
turns on django-eventstream's event storage (``DjangoModelStorage``, one row per event).
The channel layer is Channels' own ``InMemoryChannelLayer``, as a plain project has it.
"""

import os

import environ

SECRET_KEY = "bench-anchors-only-0123456789-0123456789-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "daphne",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "channels",
    "django_eventstream",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.anchors.urls"
ASGI_APPLICATION = "bench.anchors.asgi.application"
DATABASES = {"default": environ.Env.db_url_config(os.environ["DATABASE_URL"])}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
if os.environ.get("BENCH_EVENTSTREAM_STORAGE") == "1":
    EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"handlers": [], "level": "WARNING"},
}
