"""ASGI entry point: ``daphne copilot.asgi:application`` (and ``manage.py runserver``)."""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot.settings")

from django.core.asgi import get_asgi_application

from copilot.config import ConfigError

try:
    django_asgi_app = get_asgi_application()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

application = django_asgi_app
