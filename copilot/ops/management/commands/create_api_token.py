"""``manage.py create_api_token --user NAME [--name LABEL] [--expires-in 90d]``: a key for the
JSON API.

Prints only the key, once (it is stored hashed and cannot be shown again), so a script can
capture it: ``TOKEN=$(python manage.py create_api_token --user alice --name ci)``. With no
``--expires-in`` the token lasts until it is revoked (deleted in the admin).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from copilot.jobs.tokens import api_token_create
from copilot.ops.management import args
from copilot.ops.management.base import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Create an API token for a user and print it (only once: it is stored hashed). "
        "Scripts send it as 'Authorization: Bearer <token>'. It works until --expires-in has "
        "passed, or, without --expires-in, until staff revoke it (delete it in the admin)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="The token's user, by username.")
        parser.add_argument(
            "--name", default="", help="A label to recognise the token by (default: %(default)r)"
        )
        parser.add_argument(
            "--expires-in",
            type=args.positive_duration,
            default=None,
            help="How long the token works, e.g. 90d, 12h or 2w (default: no expiry).",
        )

    def handle(
        self, *positional, user: str, name: str, expires_in: timedelta | None, **options
    ) -> None:
        try:
            owner = get_user_model().objects.get(username=user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {user!r}; name an existing user with --user") from None
        if not owner.is_active:
            raise CommandError(f"user {user!r} is not active")
        _, key = api_token_create(user=owner, name=name, expires_in=expires_in)
        self.stdout.write(key)
