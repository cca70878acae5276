"""``manage.py ensure_demo_user``: the demo login that ``make run`` offers, in DEBUG only.

With DEBUG off, servers refuse to start while this login works (:mod:`copilot.ops.startup`).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from copilot.ops.startup import DEMO_PASSWORD, DEMO_USERNAME


class Command(BaseCommand):
    help = (
        "Create the demo login (demo / demo, a staff member) if it does not exist. "
        "Development only: refuses to run unless DEBUG is on."
    )

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("refusing to create the demo login: DEBUG is off.")
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        state = "created" if created else "exists"
        self.stdout.write(
            f"Demo login {state} (DEBUG only): user {DEMO_USERNAME!r}, password {DEMO_PASSWORD!r}."
        )
