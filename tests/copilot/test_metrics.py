"""GET /metrics (Prometheus): only with the token, the families, and figures that move."""

from __future__ import annotations

import asyncio
import socket
import time
from io import StringIO

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError
from prometheus_client.parser import text_string_to_metric_families

from agent_generator import AgentGeneratorClient
from agent_generator.exceptions import ConnectionFailed
from copilot.config import ConfigError, load
from copilot.jobs import services
from copilot.jobs.metrics import upstream_request_observe
from copilot.jobs.models import GenerationJob
from copilot.ops.metrics import JOB_FIGURES
from copilot.runner.runner import Runner
from copilot.runner.upstream import client_create
from tests.copilot.conftest import FAST_POLICY, running
from tests.copilot.stream.test_consumer import Stream, job_with_events, session_cookie
from tests.support.live import free_port
from tests.support.portal import portal_env, portal_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("db_closer")]

TOKEN = "metrics-token-for-tests-0123456789"
HOST = "portal.example.com"
GOAL = "Every morning at 8am, fetch the top tech news and email a summary to me@example.com"

FAMILIES = {
    "copilot_jobs",
    "copilot_oldest_queued_job_age_seconds",
    "copilot_stale_leases",
    "copilot_runner_up",
    "copilot_runner_jobs_held",
    "copilot_upstream_requests",
    "copilot_upstream_request_seconds",
    "copilot_job_duration_seconds",
    "copilot_streams_open",
    "copilot_stream_replayed_events",
    "copilot_events_published",
}


@pytest.fixture
def app(settings):
    from django.core.asgi import get_asgi_application

    from copilot.routing import build_application

    settings.ALLOWED_HOSTS = [HOST]
    settings.METRICS_TOKEN = TOKEN
    settings.COPILOT_RUNNER_IN_PROCESS = False
    return build_application(get_asgi_application())


@pytest.fixture
def fresh_counts(monkeypatch):
    """Count the terminal statuses on every scrape (in production: at most once a minute)."""
    monkeypatch.setattr(JOB_FIGURES, "terminal_max_age", 0.0)


async def get(
    app, path: str = "/metrics", *, token: str | None = TOKEN, host: str = HOST, method="GET"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
        return await client.request(method, path, headers=headers)


async def scrape(app) -> str:
    answer = await get(app)
    assert answer.status_code == 200, answer.text
    return answer.text


def figure(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


@sync_to_async
def submit(user) -> GenerationJob:
    return services.job_submit(user=user, kind="decompose", payload={"description": GOAL})


# -- the setting ---------------------------------------------------------------------------


def test_metrics_token_is_unset_by_default_and_read_when_set(tmp_path):
    assert load({"DEBUG": "true"}, base_dir=tmp_path).metrics_token == ""
    env = {"DEBUG": "true", "METRICS_TOKEN": f" {TOKEN} "}
    assert load(env, base_dir=tmp_path).metrics_token == TOKEN


@pytest.mark.parametrize("value", ["short", "a token with spaces 0123456789", "é" * 20, "x;" * 10])
def test_a_bad_metrics_token_is_one_line_naming_it_without_echoing_it(tmp_path, value):
    with pytest.raises(ConfigError) as caught:
        load({"DEBUG": "true", "METRICS_TOKEN": value}, base_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith("METRICS_TOKEN") and "\n" not in message
    assert value not in message


# -- who gets an answer --------------------------------------------------------------------


async def test_with_the_token_it_answers_the_families_in_the_text_format(app):
    answer = await get(app)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert families(answer.text) >= FAMILIES
    statuses = {
        sample.labels["status"]
        for family in text_string_to_metric_families(answer.text)
        if family.name == "copilot_jobs"
        for sample in family.samples
    }
    assert statuses == set(GenerationJob.Status.values)


@pytest.mark.parametrize(
    "token", [None, "", "wrong-token-0123456789abcdef", TOKEN[:-1], TOKEN + "x", TOKEN.upper()]
)
async def test_without_the_right_token_it_is_django_s_404(app, token):
    answer = await get(app, token=token)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")  # Django's, as for any page
    assert "copilot_jobs" not in answer.text


async def test_another_scheme_or_path_is_django_s_404(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as client:
        basic = await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        twice = await client.get(
            "/metrics",
            headers=[("Authorization", f"Bearer {TOKEN}"), ("Authorization", f"Bearer {TOKEN}")],
        )
    assert basic.status_code == twice.status_code == 404
    for path in ("/metrics/", "/metrics/x", "/metricsx"):
        assert (await get(app, path)).status_code == 404


async def test_with_metrics_token_unset_it_is_404_even_for_an_empty_bearer(app, settings):
    settings.METRICS_TOKEN = ""
    for token in (None, "", TOKEN):
        assert (await get(app, token=token)).status_code == 404


async def test_an_authorized_scrape_by_address_passes_without_allowed_hosts(app):
    # Prometheus scrapes each process by its address, which ALLOWED_HOSTS does not list.
    assert (await get(app, host="10.1.2.3:8000")).status_code == 200
    # Without the token the request is Django's, which refuses the host.
    assert (await get(app, host="10.1.2.3:8000", token=None)).status_code == 400


async def test_only_get_and_head(app):
    assert (await get(app, method="HEAD")).status_code == 200
    refused = await get(app, method="POST")
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")


# -- figures that move ---------------------------------------------------------------------


async def test_an_open_stream_counts_until_it_closes(app, user):
    job = await job_with_events(user, progress=0)
    first = await scrape(app)
    before = figure(first, "copilot_streams_open")
    cookie = await session_cookie(user)
    stream = Stream(app, job_id=job.id, cookie=cookie, headers=[(b"last-event-id", b"1")])
    assert (await stream.open())[0] == 200
    assert [e["id"] for e in await stream.events(2)] == ["2", "3"]  # replayed from the database
    text = await scrape(app)
    assert figure(text, "copilot_streams_open") == before + 1
    assert figure(text, "copilot_stream_replayed_events_total") == (
        figure(first, "copilot_stream_replayed_events_total") + 2
    )
    await stream.disconnect()
    deadline = time.monotonic() + 5
    while figure(await scrape(app), "copilot_streams_open") != before:
        assert time.monotonic() < deadline, "the closed stream is still counted"
        await asyncio.sleep(0.02)


async def test_a_queued_job_no_runner_holds_is_counted_and_stale(app, user, fresh_counts):
    before = await scrape(app)
    await submit(user)
    after = await scrape(app)
    queued = figure(before, "copilot_jobs", status="queued")
    assert figure(after, "copilot_jobs", status="queued") == queued + 1
    assert figure(after, "copilot_stale_leases") == figure(before, "copilot_stale_leases") + 1
    assert figure(after, "copilot_oldest_queued_job_age_seconds") >= 0
    assert figure(after, "copilot_events_published_total") == (
        figure(before, "copilot_events_published_total") + 1  # the job's first event
    )


async def test_a_finished_job_moves_the_runner_s_figures(app, user, reference, fresh_counts):
    def client() -> AgentGeneratorClient:
        return AgentGeneratorClient(
            base_url="http://reference.test",
            transport=httpx.ASGITransport(app=reference),
            policy=FAST_POLICY,
            on_request=upstream_request_observe,  # as copilot.runner.upstream.client_create
        )

    done = {"kind": "decompose", "status": "completed"}
    before = await scrape(app)
    async with running(Runner(client_factory=client)):
        assert (
            figure(await scrape(app), "copilot_runner_up")
            == figure(before, "copilot_runner_up") + 1
        )
        job = await submit(user)
        deadline = time.monotonic() + 15
        while not (await sync_to_async(GenerationJob.objects.get)(pk=job.pk)).is_terminal:
            assert time.monotonic() < deadline, "the job did not end"
            await asyncio.sleep(0.05)
    after = await scrape(app)
    assert figure(after, "copilot_job_duration_seconds_count", **done) == (
        figure(before, "copilot_job_duration_seconds_count", **done) + 1
    )
    assert figure(after, "copilot_jobs", status="completed") == (
        figure(before, "copilot_jobs", status="completed") + 1
    )
    ok = {"outcome": "ok"}
    for operation in ("submit", "poll"):
        assert figure(after, "copilot_upstream_requests_total", operation=operation, **ok) > (
            figure(before, "copilot_upstream_requests_total", operation=operation, **ok)
        )
    assert figure(after, "copilot_events_published_total") > figure(
        before, "copilot_events_published_total"
    )
    assert figure(after, "copilot_runner_up") == figure(before, "copilot_runner_up")
    assert figure(after, "copilot_runner_jobs_held") == figure(before, "copilot_runner_jobs_held")


async def test_the_runner_s_client_counts_each_request_and_its_outcome(app, settings):
    settings.AGENT_GENERATOR_URL = "embedded"
    labels = {"operation": "health", "outcome": "ok"}
    before = await scrape(app)
    async with client_create(max_connections=1) as client:
        assert client.on_request is upstream_request_observe
        await client.health()
    down = {"operation": "health", "outcome": "connection_error"}
    async with AgentGeneratorClient(
        base_url=f"http://127.0.0.1:{free_port()}", on_request=upstream_request_observe
    ) as client:
        with pytest.raises(ConnectionFailed):
            await client.health()
    after = await scrape(app)
    for counted in (labels, down):
        assert figure(after, "copilot_upstream_requests_total", **counted) == (
            figure(before, "copilot_upstream_requests_total", **counted) + 1
        )
        assert figure(after, "copilot_upstream_request_seconds_count", **counted) == (
            figure(before, "copilot_upstream_request_seconds_count", **counted) + 1
        )


async def test_a_failing_observer_does_not_fail_the_request(settings):
    settings.AGENT_GENERATOR_URL = "embedded"
    calls = []

    def observer(operation: str, outcome: str, seconds: float) -> None:
        calls.append((operation, outcome))
        raise RuntimeError("observer broke")

    async with client_create(max_connections=1) as client:
        client.on_request = observer
        await client.health()
    assert calls == [("health", "ok")]


# -- a runner process's own port ------------------------------------------------------------


@pytest.mark.parametrize("port", ["0", "65536", "http", "-1"])
def test_runworker_refuses_a_bad_metrics_port(port):
    with pytest.raises(CommandError) as refused:
        call_command("runworker", "agent-generator", "--metrics-port", port, stdout=StringIO())
    assert "not a port" in str(refused.value)


def test_runworker_refuses_a_metrics_port_in_use_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        with pytest.raises(CommandError) as refused:
            call_command("runworker", "agent-generator", "--metrics-port", port)
    message = str(refused.value)
    assert message.startswith(f"cannot serve metrics on 127.0.0.1:{port}: ")
    assert "\n" not in message


@pytest.mark.slow
def test_runworker_serves_its_own_figures_on_its_metrics_port():
    port = free_port()
    args = ("runworker", "agent-generator", "--metrics-port", str(port))
    with portal_process(*args, env=portal_env()) as worker:
        deadline = time.monotonic() + 20
        while True:
            assert worker.process.poll() is None, worker.output()
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
                if figure(text, "copilot_runner_up") == 1:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"no runner figures:\n{worker.output()}"
            time.sleep(0.05)
    assert {"copilot_runner_jobs_held", "copilot_upstream_requests"} <= families(text)
    assert "copilot_jobs" not in families(text)  # the database's figures are the web's
