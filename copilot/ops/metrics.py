"""``GET /metrics``: the process's figures and the database's, for Prometheus.

The process's own counters and gauges are defined in :mod:`copilot.jobs.metrics` (in
prometheus-client's default registry); the jobs' figures are read from the database at scrape
time by :class:`JobFigures`, in a registry of its own that only this endpoint serves (a
runner's ``--metrics-port`` serves the default registry alone: a runner does not query for
them). With ``METRICS_TOKEN`` unset, or without ``Authorization: Bearer <METRICS_TOKEN>``,
the request goes on to Django, which has no such page: a 404, as if it did not exist.

The database's figures per scrape: one ``GROUP BY status`` over the active statuses (few rows,
on the status index) with the oldest queued job, and one count of stale jobs. The terminal
statuses' counts grow without end (a million completed jobs), so they are counted at most
once per :attr:`JobFigures.terminal_max_age` seconds in each process and served from that
count in between.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterator

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from copilot.jobs.models import GenerationJob

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"

#: How often, at most, each process counts the jobs in terminal statuses.
TERMINAL_COUNT_SECONDS = 60.0

Status = GenerationJob.Status


class JobFigures(Collector):
    """The database's figures: ``copilot_jobs`` by status, the oldest queued job's age, and
    ``copilot_stale_leases``."""

    def __init__(self, *, terminal_max_age: float = TERMINAL_COUNT_SECONDS) -> None:
        self.terminal_max_age = terminal_max_age
        self._terminal: dict[str, int] = {}
        self._terminal_at: float | None = None

    def collect(self) -> Iterator[Metric]:
        try:
            active = (
                GenerationJob.objects.active()
                .order_by()
                .values("status")
                .annotate(count=Count("pk"), oldest=Min("created_at"))
            )
            counts = {row["status"]: row["count"] for row in active}
            oldest = next((r["oldest"] for r in active if r["status"] == Status.QUEUED), None)
            stale = GenerationJob.objects.stale().count()
            terminal = self._terminal_counts()
        except DatabaseError:
            logger.warning("metrics: database figures not read", exc_info=True)
            return
        jobs = GaugeMetricFamily(
            "copilot_jobs",
            "Jobs by status (terminal statuses counted at most once a minute per process).",
            labels=["status"],
        )
        for status in GenerationJob.ACTIVE_STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        for status in GenerationJob.TERMINAL_STATUSES:
            jobs.add_metric([status], terminal.get(status, 0))
        yield jobs
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "copilot_oldest_queued_job_age_seconds",
            "Seconds the oldest queued job has waited (0 when none waits).",
            value=max(age, 0.0),
        )
        yield GaugeMetricFamily(
            "copilot_stale_leases",
            "Active jobs no runner holds (GenerationJob.objects.stale()).",
            value=stale,
        )

    def _terminal_counts(self) -> dict[str, int]:
        now = time.monotonic()
        if self._terminal_at is None or now - self._terminal_at >= self.terminal_max_age:
            finished = (
                GenerationJob.objects.finished().order_by().values("status").annotate(n=Count("pk"))
            )
            self._terminal = {row["status"]: row["n"] for row in finished}
            self._terminal_at = now
        return self._terminal


JOB_FIGURES = JobFigures()
DATABASE_REGISTRY = CollectorRegistry(auto_describe=False)
DATABASE_REGISTRY.register(JOB_FIGURES)


@database_sync_to_async
def exposition() -> bytes:
    """The text exposition of the process's registry, then the database's figures."""
    return generate_latest(REGISTRY) + generate_latest(DATABASE_REGISTRY)


def bearer_matches(scope, token: str) -> bool:
    """Whether the request's one ``Authorization`` header is ``Bearer <token>``."""
    values = [v for name, v in scope.get("headers", ()) if name.lower() == b"authorization"]
    if not token or len(values) != 1:
        return False
    scheme, _, given = values[0].decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


class MetricsMount:
    """``GET /metrics`` with the bearer token: the figures; anything else goes to ``default``.

    No session, no login, and no ``ALLOWED_HOSTS`` check for an authorized scrape: Prometheus
    scrapes each process by its address, and the token (which a page on another site cannot
    send) is the guard. Without it the request is Django's, host check and 404 included.
    """

    def __init__(self, *, default) -> None:
        self.default = default

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope.get("path") != METRICS_PATH
            or not bearer_matches(scope, settings.METRICS_TOKEN)
        ):
            return await self.default(scope, receive, send)
        if scope.get("method") not in ("GET", "HEAD"):
            return await _answer(send, 405, b"Method Not Allowed\n", [(b"allow", b"GET, HEAD")])
        body = await exposition()
        if scope.get("method") == "HEAD":
            body = b""
        await _answer(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])


async def _answer(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"cache-control", b"no-store")]
    if not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
