"""What the operators' commands share: one-line errors with exit status 1, and progress."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser


class OperatorCommand(BaseCommand):
    """A command whose bad arguments get one line and exit status 1, like its other errors.

    (argparse would print the usage and exit with status 2.)
    """

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def error(message: str) -> NoReturn:
            if parser.called_from_command_line:
                sys.stderr.write(f"CommandError: {message}\n")
                sys.exit(1)
            raise CommandError(message)

        # BaseCommand.create_parser builds the CommandParser itself (no hook for a subclass),
        # so argparse's error() is replaced on this instance.
        parser.error = error  # type: ignore[method-assign]
        return parser


class Progress:
    """``done N of M`` lines on stderr for runs over many jobs (every tenth, at least 20)."""

    MIN_TOTAL = 20

    def __init__(self, *, stream, total: int, verb: str) -> None:
        self.stream = stream
        self.total = total
        self.verb = verb
        self.done = 0
        self.step = max(total // 10, 1)

    def advance(self) -> None:
        self.done += 1
        if self.total >= self.MIN_TOTAL and (self.done % self.step == 0 or self.done == self.total):
            self.stream.write(f"{self.verb} {self.done} of {self.total}")
