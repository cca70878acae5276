"""An open event stream through a database outage (copilot.stream.outage): it keeps its
connection and its heartbeats, takes live events from Redis meanwhile, fills the gap from the
database once it is back, and ends up with exactly the job's log: no gap, no duplicate.

Real processes: Daphne on PostgreSQL through the outage proxy, Redis (``TEST_REDIS_URL``)
between the test, which writes the events as a runner would, and the server.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from django.test import Client

from copilot.config import POOL_TIMEOUT_SECONDS, channel_layer_config
from copilot.jobs import events, services, transitions
from copilot.jobs.models import GenerationJob, JobEvent
from tests.support import portal
from tests.support.db_outage import DbOutageProxy
from tests.support.web_outage import loud_lines, web_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

GOAL = "Every morning at 8am, fetch the top tech news and email a summary to me@example.com"


class Reader(threading.Thread):
    """Reads one SSE response to its end: each frame, with when it came."""

    def __init__(self, *, url: str, cookie: str, last_event_id: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.headers = {"Cookie": f"sessionid={cookie}", "Last-Event-ID": str(last_event_id)}
        self.status: int | None = None
        self.frames: list[tuple[float, dict]] = []
        self.ended = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            timeout = httpx.Timeout(10, read=30)
            with httpx.stream("GET", self.url, headers=self.headers, timeout=timeout) as response:
                self.status = response.status_code
                frame: dict = {}
                for line in response.iter_lines():
                    if line == "":
                        if frame:
                            self.frames.append((time.monotonic(), frame))
                        frame = {}
                        continue
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    frame["comment" if field == "" else field] = value
        except BaseException as exc:  # handed to the test
            self.error = exc
        finally:
            self.ended.set()

    def events(self) -> list[dict]:
        return [f for _, f in self.frames if "comment" not in f]

    def ids(self) -> list[int]:
        return [int(f["id"]) for f in self.events() if "id" in f]

    def wait_for(self, seq: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while seq not in self.ids():
            assert not self.ended.is_set(), (self.status, self.error, self.frames)
            assert time.monotonic() < deadline, f"no event {seq}: {self.ids()}"
            time.sleep(0.05)


@pytest.fixture
def redis_layer(settings, redis_url):
    settings.CHANNEL_LAYERS = {"default": channel_layer_config(redis_url=redis_url)}
    return redis_url


# 3 s: the pool's wait (5 s) outlasts it, so the stream's reads just wait. 12 s: they fail,
# and the hub's checks and the stream's gap fill must wait it out and try again.
@pytest.mark.parametrize("outage_seconds", [3, 12])
def test_an_open_stream_rides_out_a_database_outage(user, redis_layer, outage_seconds):
    job = services.job_submit(user=user, kind="decompose", payload={"description": GOAL})
    job = transitions.job_mark_submitting(job=job).job
    transitions.job_mark_running(job=job, upstream_job_id="up-1")  # seq 1..3
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value
    with (
        DbOutageProxy.for_url(portal.test_database_url()) as proxy,
        web_server(proxy=proxy, REDIS_URL=redis_layer, COPILOT_HEARTBEAT_SECONDS="1") as web,
    ):
        reader = Reader(url=f"{web.url}/jobs/{job.id}/events", cookie=cookie, last_event_id=0)
        reader.start()
        reader.wait_for(3)
        events.job_progress(job_id=job.id, percent=10, phase="before")  # seq 4, live
        reader.wait_for(4)
        proxy.begin_outage()
        down_at = time.monotonic()
        try:
            # Written while the web process cannot read the database (as a runner that kept
            # its connection, or Redis, would deliver them): 5 comes live; 6 is never
            # published, so 7 leaves a gap only the database can fill.
            events.job_progress(job_id=job.id, percent=20, phase="during")  # seq 5
            reader.wait_for(5)
            events.job_progress(job_id=job.id, percent=30, phase="unpublished", publish=False)
            events.job_progress(job_id=job.id, percent=40, phase="after the gap")  # seq 7
            time.sleep(max(0.0, outage_seconds - (time.monotonic() - down_at)))
            assert 6 not in reader.ids() and not reader.ended.is_set()
        finally:
            proxy.end_outage()
        up_at = time.monotonic()
        reader.wait_for(7)
        job.refresh_from_db()
        transitions.job_complete(job=job, result={"type": "vague_goal", "suggested_goal": "g"})
        assert reader.ended.wait(20), reader.ids()
        assert web.poll() is None
        output = web.output()
    assert reader.error is None and reader.status == 200
    log = list(JobEvent.objects.filter(job_id=job.id).order_by("seq").values_list("seq", "type"))
    received = [(int(e["id"]), e["event"]) for e in reader.events() if "id" in e]
    assert received == log  # exactly the log: no gap, no duplicate, in order
    assert [e.get("event") for e in reader.events()] == ["snapshot"] + [t for _, t in log]
    assert not any(e.get("event") == "reconnect" for e in reader.events())
    assert GenerationJob.objects.get(pk=job.id).status == GenerationJob.Status.COMPLETED
    # Heartbeats went on while the database was away.
    pings = [at for at, f in reader.frames if f.get("comment") == "ping" and down_at < at < up_at]
    assert len(pings) >= outage_seconds - 1
    assert loud_lines(output) == []
    # The hub's checks said so once, if at all, and kept the stream (its login was not
    # taken for gone).
    warned = output.count("stream hub: database unavailable")
    assert warned <= 1
    if outage_seconds > POOL_TIMEOUT_SECONDS:
        assert warned == 1
    assert "stream ended, login gone" not in output
