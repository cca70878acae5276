"""``manage.py submit_job``: create a job from the command line, and optionally follow it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from copilot.jobs import services
from copilot.jobs.exceptions import CopilotError, InvalidJobRequest
from copilot.jobs.job_requests import AGENT_FIELD, TEXT_FIELD
from copilot.jobs.json_limits import JSON_TOO_DEEP, json_too_deep
from copilot.jobs.models import GenerationJob
from copilot.jobs.presenters import event_line, job_as_dict
from copilot.jobs.selectors import events_after, job_get
from copilot.ops.management import args
from copilot.ops.management.base import OperatorCommand
from copilot.runner.runner import Runner
from copilot.runner.thread import RunnerThread

FOLLOW_INTERVAL = 0.2


class Command(OperatorCommand):
    help = (
        "Create a generation job for a user. With --wait, follow it and print each event as "
        "it comes (exit status 0 when it completes, 1 otherwise). With no shared channel "
        "layer (no REDIS_URL), --wait runs a job runner in this process, so no server is needed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--kind",
            type=args.kind,
            default="decompose",
            help="decompose, generate, update or customize (default: %(default)r)",
        )
        parser.add_argument(
            "--description",
            required=True,
            help="The goal (decompose), the instructions (generate) or the change wanted "
            "(update, customize).",
        )
        parser.add_argument(
            "--agent-json",
            type=Path,
            help="A file holding the agent JSON to change (update, customize).",
        )
        parser.add_argument(
            "--user", default="demo", help="The job's owner, by username (default: %(default)r)"
        )
        parser.add_argument(
            "--notify-email",
            action="store_true",
            help="Email the owner when each attempt of the job ends.",
        )
        parser.add_argument("--wait", action="store_true", help="Follow the job until it ends.")
        parser.add_argument(
            "--json", action="store_true", help="Print the job as one JSON object at the end."
        )

    def handle(
        self,
        *,
        kind: str,
        description: str,
        agent_json: Path | None,
        user: str,
        notify_email: bool,
        wait: bool,
        json: bool,
        **options,
    ) -> None:
        owner = self._user(user)
        job_kind = GenerationJob.Kind(kind)  # a known kind: args.kind checked it
        payload: dict[str, Any] = {TEXT_FIELD[job_kind]: description}
        if job_kind in AGENT_FIELD and agent_json is not None:
            payload[AGENT_FIELD[job_kind]] = self._agent_json(agent_json)
        try:
            job = services.job_submit(
                user=owner, kind=kind, payload=payload, notify_email=notify_email
            )
        except InvalidJobRequest as exc:
            raise CommandError(f"invalid job: {exc}") from None
        except CopilotError as exc:
            raise CommandError(str(exc)) from None
        out = self.stderr if json else self.stdout
        out.write(f"job {job.id} queued ({kind}, owner {owner.username})")
        if wait:
            job = self._follow(job, out=out)
        if json:
            self.stdout.write(_json_dumps(job_as_dict(job)))
        if wait and job.status != GenerationJob.Status.COMPLETED:
            raise CommandError(f"job {job.id} ended {job.status}: {job.error_message}".rstrip(": "))

    def _user(self, username: str):
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {username!r}; name an existing user with --user") from None

    def _agent_json(self, path: Path) -> object:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:  # not UTF-8
            raise CommandError(f"{path} is not JSON: {exc}") from None
        if json_too_deep(text):
            raise CommandError(f"{path} is too deeply nested: {JSON_TOO_DEEP}")
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CommandError(f"{path} is not JSON: {exc}") from None

    def _follow(self, job: GenerationJob, *, out) -> GenerationJob:
        # With no shared channel layer no other process can run the job: run a runner here,
        # as a web process does. Its wake-up is the job.run the submit already sent.
        shared = settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis")
        thread = None if shared else RunnerThread(Runner(concurrency=1)).start()
        printed = 0
        try:
            while True:
                for event in events_after(job_id=job.id, seq=printed):
                    out.write(event_line(event))
                    printed = event.seq
                job = job_get(job_id=job.id)
                if job.is_terminal and printed >= job.last_event_seq:
                    return job
                time.sleep(FOLLOW_INTERVAL)
        finally:
            if thread is not None:
                thread.stop()


def _json_dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
