"""Reading the mail settings: ``EMAIL_URL``, ``DEFAULT_FROM_EMAIL`` and ``PORTAL_BASE_URL``.

The job-end emails (:mod:`copilot.jobs.notify`) go through Django's email framework, set up
from ``EMAIL_URL`` by django-environ (``Env.email_url_config``), from ``DEFAULT_FROM_EMAIL``,
and link to the job under ``PORTAL_BASE_URL``. Each reader takes the variable's raw value and
raises ValueError with the one line :mod:`copilot.config` shows (as a ConfigError); it imports
nothing of the portal, so the config module can use it.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import environ

#: ``EMAIL_URL``'s default: every mail printed on the server's standard output.
EMAIL_URL_DEFAULT = "consolemail://"

#: Seconds an SMTP connection or command may take before the send fails (and is retried);
#: ``?timeout=N`` on ``EMAIL_URL`` overrides it.
EMAIL_TIMEOUT_SECONDS = 10

#: ``PORTAL_BASE_URL``'s default with ``DEBUG`` on: where ``make run`` serves the portal.
PORTAL_BASE_URL_DEBUG = "http://127.0.0.1:8000"

#: The sender when ``DEFAULT_FROM_EMAIL`` is unset (mail servers on the internet refuse it;
#: ``check --deploy`` says so).
DEFAULT_FROM_EMAIL_DEFAULT = "Agent Copilot <copilot@localhost>"

_EMAIL_URL_FORMS = (
    "smtp+tls://user:password@host:587 (STARTTLS), smtp+ssl://user:password@host:465, "
    "smtp://host:25, consolemail://, filemail:////absolute/folder, memorymail:// or dummymail://"
)

#: A public base URL: ``http(s)://host[:port][/path]``, no query or fragment.
_BASE_URL = re.compile(
    r"https?://([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?(/[^\s?#]*)?",
    re.IGNORECASE,
)


def email_settings(raw: str, *, name: str, base_dir: Path) -> dict[str, Any]:
    """Django's ``EMAIL_*`` settings for the URL ``raw``; blank: the console backend.

    A ``filemail://`` folder that is not absolute is under ``base_dir``. Messages name the
    scheme only, never the URL, which may hold a password.
    """
    raw = raw or EMAIL_URL_DEFAULT
    scheme = raw.split("://", 1)[0].lower() if "://" in raw else ""
    if scheme not in environ.Env.EMAIL_SCHEMES:
        raise ValueError(f"{name} has an unsupported scheme {scheme!r}: use {_EMAIL_URL_FORMS}.")
    try:
        parsed = environ.Env.email_url_config(raw)
    except ValueError:  # a port that is not a number
        raise ValueError(f"{name} is not a valid URL: use {_EMAIL_URL_FORMS}.") from None
    if scheme.startswith("smtp") and not parsed["EMAIL_HOST"]:
        raise ValueError(f"{name} names no mail server: use {_EMAIL_URL_FORMS}.")
    folder = None
    if scheme == "filemail":
        if parsed["EMAIL_HOST"] or not parsed["EMAIL_FILE_PATH"]:
            raise ValueError(
                f"{name} names no folder: use filemail:////absolute/folder, or "
                "filemail:///folder for one under the project folder."
            )
        folder = str(base_dir / parsed["EMAIL_FILE_PATH"])
    return {
        "EMAIL_BACKEND": parsed["EMAIL_BACKEND"],
        "EMAIL_HOST": parsed["EMAIL_HOST"] or "localhost",
        "EMAIL_PORT": parsed["EMAIL_PORT"] or 25,
        "EMAIL_HOST_USER": parsed["EMAIL_HOST_USER"] or "",
        "EMAIL_HOST_PASSWORD": parsed["EMAIL_HOST_PASSWORD"] or "",
        "EMAIL_USE_TLS": bool(parsed.get("EMAIL_USE_TLS")),
        "EMAIL_USE_SSL": bool(parsed.get("EMAIL_USE_SSL")),
        "EMAIL_TIMEOUT": parsed.get("OPTIONS", {}).get("TIMEOUT") or EMAIL_TIMEOUT_SECONDS,
        "EMAIL_FILE_PATH": folder,
    }


def from_email(raw: str, *, name: str) -> str:
    """``address`` or ``Name <address>``; blank: :data:`DEFAULT_FROM_EMAIL_DEFAULT`."""
    raw = raw or DEFAULT_FROM_EMAIL_DEFAULT
    local, _, domain = parseaddr(raw)[1].rpartition("@")
    if not local or not domain or "\r" in raw or "\n" in raw:
        raise ValueError(
            f"{name}={raw!r} is not an email address: use portal@example.com or "
            "'Agent Copilot <portal@example.com>'."
        )
    return raw


def base_url(raw: str, *, name: str, debug: bool) -> str:
    """The portal's public URL, without a trailing ``/``; blank: ``make run``'s with ``debug``,
    else "" (emails then carry no link, and ``check --deploy`` says so)."""
    raw = raw.rstrip("/")
    if not raw:
        return PORTAL_BASE_URL_DEBUG if debug else ""
    if not _BASE_URL.fullmatch(raw):
        raise ValueError(
            f"{name}={raw!r} is not a base URL: use the address people open the portal at, "
            "http(s)://host[:port][/path] (e.g. https://portal.example.com)."
        )
    return raw
