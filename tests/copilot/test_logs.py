"""Logs an operator can search (copilot.logs): ``LOG_FORMAT=json``, one object a line, with the
job's, the user's and the request's ids where known; text stays the default."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import uuid

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.urls import reverse

from copilot.config import ConfigError, load
from copilot.logs import (
    JsonFormatter,
    OncePer,
    job_id_var,
    request_id_from,
    request_id_var,
    user_id_var,
)
from copilot.routing import build_application
from tests.copilot.conftest import running
from tests.copilot.runner.test_runner import runner_for, submit, wait_until_ended
from tests.support.portal import ROOT, portal_env


def _record(message: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("copilot.test", logging.WARNING, __file__, 1, message, args, exc_info)


class _JsonLines(logging.Handler):
    """Formats each record as it is emitted (in its own context, as a real handler does)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.stream = io.StringIO()

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write(self.format(record) + "\n")

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def json_lines():
    handler = _JsonLines()
    logger = logging.getLogger("copilot")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# -- the formatter ---------------------------------------------------------------------------


def test_a_record_is_one_json_object_with_its_fields():
    line = JsonFormatter().format(_record("job ended id=%s status=%s", "j1", "failed\nfor real"))
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["message"] == "job ended id=j1 status=failed\nfor real"
    assert (fields["level"], fields["logger"]) == ("WARNING", "copilot.test")
    assert fields["time"].endswith("+00:00") and "T" in fields["time"]
    assert not {"job_id", "user_id", "request_id", "exc_info"} & set(fields)  # none known


def test_the_ids_in_context_are_on_the_line():
    tokens = [job_id_var.set("job-1"), user_id_var.set(7), request_id_var.set("req-1")]
    try:
        fields = json.loads(JsonFormatter().format(_record("hello")))
    finally:
        for var, token in zip((job_id_var, user_id_var, request_id_var), tokens, strict=True):
            var.reset(token)
    assert (fields["job_id"], fields["user_id"], fields["request_id"]) == ("job-1", 7, "req-1")


def test_a_traceback_is_a_field_not_more_lines():
    try:
        raise ValueError("boom")
    except ValueError:
        line = JsonFormatter().format(_record("failed", exc_info=sys.exc_info()))
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["message"] == "failed"
    assert fields["exc_info"].startswith("Traceback (most recent call last):")
    assert fields["exc_info"].endswith("ValueError: boom")


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("abc-123", True),
        (b"lb.7f3a:42_x", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("has space", False),
        ('quote"', False),
        ("new\nline", False),
        ("", False),
        (None, False),
    ],
)
def test_a_request_id_is_kept_only_when_short_and_safe(header, kept):
    got = request_id_from(header)
    if kept:
        assert got == (header.decode() if isinstance(header, bytes) else header)
    else:
        assert len(got) == 32 and int(got, 16) >= 0
        assert request_id_from(header) != got  # new each time


# -- the setting -----------------------------------------------------------------------------


def test_text_is_the_default(settings, tmp_path):
    assert load({"DEBUG": "true"}, base_dir=tmp_path).log_format == "text"
    assert load({"DEBUG": "true", "LOG_FORMAT": " JSON "}, base_dir=tmp_path).log_format == "json"
    assert settings.LOGGING["handlers"]["console"]["formatter"] == "plain"


@pytest.mark.parametrize("bad", ["xml", "logfmt", "true", "json,text"])
def test_a_bad_log_format_is_one_line(tmp_path, bad):
    with pytest.raises(ConfigError) as caught:
        load({"DEBUG": "true", "LOG_FORMAT": bad}, base_dir=tmp_path)
    assert str(caught.value) == f"LOG_FORMAT={bad!r} is not text or json."


@pytest.mark.slow
def test_log_format_json_makes_the_process_log_json_lines():
    script = (
        "import django, logging; django.setup(); "
        "logging.getLogger('copilot.test').warning('hello %s', 'there')"
    )
    env = portal_env(LOG_FORMAT="json")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    fields = json.loads(lines[0])
    assert (fields["message"], fields["logger"]) == ("hello there", "copilot.test")


def test_once_per_lets_one_record_of_a_logger_through_per_interval():
    once = OncePer(seconds=60)
    records = [_record("attempt %s", n) for n in range(3)]
    other = logging.LogRecord("other", logging.WARNING, __file__, 1, "x", None, None)
    records[1].created = records[0].created + 59
    records[2].created = records[0].created + 61
    assert [once.filter(r) for r in records] == [True, False, True]
    assert once.filter(other)  # each logger on its own


@pytest.mark.slow
def test_the_pool_s_attempts_at_an_absent_database_log_one_line_not_one_each():
    """psycopg's pool warns at every failed connection attempt; one of them is shown, with
    its cause, and our own line says the database did not answer."""
    script = (
        "import django, logging; django.setup(); "
        "from copilot.ops.startup import demo_login_works; demo_login_works()"
    )
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = portal_env(DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/none")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    pool_lines = [line for line in done.stderr.splitlines() if "psycopg.pool" in line]
    assert len(pool_lines) == 1, done.stderr
    assert "Connection refused" in done.stderr
    assert "demo login check skipped, the database did not answer" in done.stderr


# -- ids on real lines -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("db_closer")
async def test_the_job_id_is_on_the_runner_lines_of_that_job(user, reference, json_lines):
    async with running(runner_for(reference)):
        job = await wait_until_ended(await submit(user))
    lines = json_lines.lines()
    drives = [line for line in lines if line["message"].startswith("runner drives")]
    assert [line["job_id"] for line in drives] == [str(job.id)]
    started = [line for line in lines if line["message"].startswith("runner started")]
    assert started and "job_id" not in started[0]  # the runner's own lines name no job


@pytest.mark.django_db
def test_the_request_id_round_trips_and_is_on_the_request_lines(client, user, json_lines):
    client.force_login(user)
    answer = client.post(
        reverse("job_new"),
        {"kind": "decompose", "text": "Every morning at 8am, email me the news"},
        headers={"X-Request-ID": "probe-42"},
    )
    assert answer.status_code == 302
    assert answer["X-Request-ID"] == "probe-42"
    submitted = [line for line in json_lines.lines() if line["message"].startswith("job sub")]
    assert submitted, json_lines.stream.getvalue()
    assert (submitted[0]["request_id"], submitted[0]["user_id"]) == ("probe-42", user.pk)
    # A header that is not a safe token is replaced by a new id, echoed the same way.
    fresh = client.get("/jobs/", headers={"X-Request-ID": "no good"})
    assert fresh["X-Request-ID"] != "no good" and len(fresh["X-Request-ID"]) == 32
    # Out of the request, the ids are gone again.
    assert (request_id_var.get(), user_id_var.get()) == (None, None)


async def test_the_event_stream_echoes_the_request_id():
    app = build_application(get_asgi_application())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        answer = await client.get(
            f"/jobs/{uuid.uuid4()}/events", headers={"X-Request-ID": "stream-7"}
        )
    assert (answer.status_code, answer.headers["x-request-id"]) == (401, "stream-7")
