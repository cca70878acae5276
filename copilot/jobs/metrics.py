"""The process's Prometheus counters, gauges and histograms, which the code moves as it works.

Defined here, on the lowest floor, so that ``runner``, ``stream`` and ``jobs.messaging`` can
move them without importing upward. They live in prometheus-client's default registry, which
``GET /metrics`` (:mod:`copilot.ops.metrics`, with the database's figures added) and a
runner's ``--metrics-port`` serve. Each process has its own figures: scrape every process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:  # importable before Django's apps are ready (copilot.config imports upstream)
    from copilot.jobs.models import GenerationJob

#: A generation takes 5 to 30 minutes; the reference service's about one.
JOB_DURATION_BUCKETS = (30, 60, 120, 300, 600, 900, 1200, 1500, 1800, 2400, 3600, 7200)

#: One request to the Agent Generator: a poll may be held up to its ``?wait=`` (25 s).
UPSTREAM_REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)

RUNNER_UP = Gauge(
    "copilot_runner_up", "Job runners running in this process (0 in a web process without one)."
)
RUNNER_JOBS_HELD = Gauge(
    "copilot_runner_jobs_held", "Jobs this process's runners hold a lease on and follow."
)
UPSTREAM_REQUESTS = Counter(
    "copilot_upstream_requests",
    "HTTP requests to the Agent Generator, each retry counted (outcome: ok or an error_type).",
    ["operation", "outcome"],
)
UPSTREAM_REQUEST_SECONDS = Histogram(
    "copilot_upstream_request_seconds",
    "Seconds per HTTP request to the Agent Generator (waits between requests not included).",
    ["operation", "outcome"],
    buckets=UPSTREAM_REQUEST_BUCKETS,
)
JOB_DURATION_SECONDS = Histogram(
    "copilot_job_duration_seconds",
    "Seconds from a job's start (or creation) to its end, observed by the runner that ends it.",
    ["kind", "status"],
    buckets=JOB_DURATION_BUCKETS,
)
STREAMS_OPEN = Gauge("copilot_streams_open", "Event streams (SSE) open in this process.")
STREAM_REPLAYED_EVENTS = Counter(
    "copilot_stream_replayed_events", "Events streams sent from the database (replay, catch-up)."
)
EVENTS_PUBLISHED = Counter(
    "copilot_events_published", "Job events published to the channel layer by this process."
)


def upstream_request_observe(operation: str, outcome: str, seconds: float) -> None:
    """``AgentGeneratorClient``'s ``on_request`` hook: count one request and its time."""
    UPSTREAM_REQUESTS.labels(operation=operation, outcome=outcome).inc()
    UPSTREAM_REQUEST_SECONDS.labels(operation=operation, outcome=outcome).observe(seconds)


def job_end_observe(*, job: GenerationJob | None) -> None:
    """Observe an ended job's duration (from ``started_at``, else ``created_at``)."""
    if job is None or not job.is_terminal or job.finished_at is None:
        return
    start = job.started_at or job.created_at
    seconds = max((job.finished_at - start).total_seconds(), 0.0)
    JOB_DURATION_SECONDS.labels(kind=job.kind, status=job.status).observe(seconds)
