"""``manage.py create_api_token --user NAME [--name LABEL]``: a key for the JSON API.

Prints only the key, once (it is stored hashed and cannot be shown again), so a script can
capture it: ``TOKEN=$(python manage.py create_api_token --user alice --name ci)``.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from copilot.jobs.tokens import api_token_create


class Command(BaseCommand):
    help = (
        "Create an API token for a user and print it (only once: it is stored hashed). "
        "Scripts send it as 'Authorization: Bearer <token>'."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="The token's user, by username.")
        parser.add_argument(
            "--name", default="", help="A label to recognise the token by (default: %(default)r)"
        )

    def handle(self, *args, user: str, name: str, **options) -> None:
        try:
            owner = get_user_model().objects.get(username=user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {user!r}; name an existing user with --user") from None
        if not owner.is_active:
            raise CommandError(f"user {user!r} is not active")
        _, key = api_token_create(user=owner, name=name)
        self.stdout.write(key)
