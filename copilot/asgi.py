"""ASGI entry point: ``daphne copilot.asgi:application`` (and ``manage.py runserver``).

Routes HTTP to Django, the embedded reference Agent Generator (when configured) to its own
app under ``/agent-generator/``, and the ``agent-generator`` channel to the job runner's
consumer. When the runner lives in the web process (no shared channel layer), it starts
here, at import, which every ASGI server does on start-up; see :mod:`copilot.runner`.
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot.settings")

from django.core.asgi import get_asgi_application

from copilot.config import ConfigError

try:
    django_asgi_app = get_asgi_application()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

from copilot.routing import build_application

application = build_application(django_asgi_app)
