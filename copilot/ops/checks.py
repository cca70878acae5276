"""``manage.py check --deploy``: mail settings that would leave job-end emails undelivered.

Warnings, not start-up refusals: a portal whose users never ask for emails needs none of
these, and the defaults serve ``make run``. docs/deploy.md's production checklist sets all
three, so ``check --deploy`` is clean with it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register

CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"


@register("copilot", deploy=True)
def mail_settings_check(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """EMAIL_URL, DEFAULT_FROM_EMAIL and PORTAL_BASE_URL as a deployment needs them."""
    warnings = []
    if settings.EMAIL_BACKEND == CONSOLE_BACKEND:
        warnings.append(
            Warning(
                "EMAIL_URL is not set: job-end emails are printed on the server's output, "
                "not delivered.",
                hint="Set EMAIL_URL to your mail server, e.g. smtp+tls://user:password@host:587.",
                id="copilot.W001",
            )
        )
    if settings.DEFAULT_FROM_EMAIL.rstrip(">").endswith("@localhost"):
        warnings.append(
            Warning(
                "DEFAULT_FROM_EMAIL is an address at localhost, which mail servers refuse.",
                hint="Set DEFAULT_FROM_EMAIL to an address of your domain.",
                id="copilot.W002",
            )
        )
    if not settings.PORTAL_BASE_URL:
        warnings.append(
            Warning(
                "PORTAL_BASE_URL is not set: job-end emails cannot link to the job.",
                hint="Set PORTAL_BASE_URL to the portal's public address, e.g. "
                "https://portal.example.com.",
                id="copilot.W003",
            )
        )
    return warnings
