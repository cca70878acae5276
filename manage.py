#!/usr/bin/env python
"""Django's command-line utility for the copilot portal."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot.settings")
    from django.core.exceptions import ImproperlyConfigured

    try:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # copilot.config.ConfigError among them
        sys.exit(f"configuration error: {exc}")


if __name__ == "__main__":
    main()
