"""ASGI entry point: ``daphne copilot.asgi:application`` (and ``manage.py runserver``).

Routes HTTP to Django, the embedded reference Agent Generator (when configured, DEBUG only)
to its own app under ``/agent-generator/``, and the ``agent-generator`` channel to the job
runner's consumer. When the runner lives in the web process (no shared channel layer), it
starts here, at import, which every ASGI server does on start-up; see
:mod:`copilot.runner.runner`. Before that, with DEBUG off, the process refuses to serve a
database where the demo login works (:mod:`copilot.ops.startup`).
"""

import gc
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot.settings")

from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured  # copilot.config.ConfigError's base

try:
    django_asgi_app = get_asgi_application()
except ImproperlyConfigured as exc:
    sys.exit(f"configuration error: {exc}")

from django.conf import settings

from copilot.ops.startup import refuse_demo_login
from copilot.routing import build_application
from copilot.runner.thread import RunnerThread

try:
    refuse_demo_login()  # with DEBUG off, never serve a database where demo / demo logs in
except ImproperlyConfigured as exc:
    sys.exit(f"configuration error: {exc}")

runner = RunnerThread() if settings.COPILOT_RUNNER_IN_PROCESS else None
try:
    application = build_application(django_asgi_app, runner=runner)  # /readyz checks the runner
except ImproperlyConfigured as exc:  # the embedded service's store cannot be opened
    sys.exit(f"configuration error: {exc}")

if runner is not None:
    runner.start()

#: The collector's thresholds in a web process: young generation, then the two older ones.
GC_THRESHOLDS = (50_000, 20, 100)

# A web process keeps thousands of streams open for minutes, about 130 objects each. With the
# collector's default thresholds (700, 10, 10) a full collection walked all of them every few
# seconds and found nothing to free: 0.4-0.6 s with 5,000 streams, every 4 s, during which
# no stream got an event (bench/RESULTS.md). What start-up built is frozen out of collection,
# and the young generation is collected less often, so fewer objects reach the old one.
gc.freeze()
gc.set_threshold(*GC_THRESHOLDS)
