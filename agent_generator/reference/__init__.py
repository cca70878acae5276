"""The reference Agent Generator: an in-memory service that speaks the job protocol.

It ships with the project so the portal can be developed, tested and demonstrated
without the real (LLM-backed) service. Generation is rule-based and deterministic (see
``decompose.py``, ``agents.py``, ``edits.py``); jobs are timelines in memory (``jobs.py``).

    from agent_generator.reference import create_app, ReferenceSettings
    app = create_app(settings=ReferenceSettings(job_seconds=0.5))
    # in-process: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ref")
    # standalone: python -m agent_generator.reference --host 127.0.0.1 --port 8001

Endpoints: ``POST /api/decompose-description``, ``/api/generate-agent``,
``/api/update-agent``, ``/api/template-modification`` (answer ``202 {"job_id", "status"}``),
``GET /api/jobs/{id}[?wait=N]``, ``DELETE /api/jobs/{id}`` (204), ``GET /api/blocks``,
``GET /health``. The job extensions are all implemented: long-poll, cancel, and
``Idempotency-Key`` (a repeated submit with a known key answers the same ``job_id`` and
creates nothing, as long as that job has not expired).

Fault injection
---------------
Faults are set per job with the ``X-Reference-Fault`` header on the SUBMIT request, and
for every job with ``ReferenceSettings.faults`` (``--faults`` on the command line); the
header adds to, or overrides, the settings. A spec is a comma-separated list of ``name``
or ``name=value`` (S: seconds, may be fractional; N: a count)::

    X-Reference-Fault: duration=0.5,poll-503=2,retry-after=0.1

``duration=S``
    this job runs S seconds instead of ``job_seconds``.
``slow-poll=S``
    every poll of this job is answered S seconds late (use it beyond a client's timeout).
``slow-submit=S``
    the first submit creates the job but answers only after S seconds; a client that
    times out and retries with the same ``Idempotency-Key`` gets the same ``job_id``.
``submit-503=N`` / ``submit-429=N``
    the first N submits with this ``Idempotency-Key`` (keyless: with this header) answer
    503 / 429 and create nothing (503s first when both are given).
``poll-503=N`` / ``poll-429=N`` / ``poll-504=N``
    the first N polls of this job answer that status (in that order when combined).
``retry-after=S``
    injected 429 and 503 answers carry ``Retry-After: S``.
``malformed``
    polls answer 200 with a non-JSON (HTML) body.
``unknown-status``
    polls answer ``{"job_id": ..., "status": "exploded"}``.
``bad-result``
    on completion decompose's ``result`` is a string, and generate/update/customise's
    result has no ``agent_json``.
``fail=ERROR_TYPE``
    the job ends ``failed`` with a human ``error`` and ``error_type`` ERROR_TYPE.
``expire``
    the first poll answers normally, then the job is forgotten: later polls answer 404.
``reset``
    polls drop the connection: the app starts a 200 answer and then, under Daphne, aborts
    the TCP connection (the client gets a reset: ``httpx.ReadError``); under
    ``httpx.ASGITransport`` it raises ``ConnectionDroppedError``, an ``httpx.ReadError``
    (and ``ConnectionResetError``), which reaches the caller.
``bad-job-id``
    the submit answers ``{"job_id": "../../etc", ...}``.

An unknown fault name, or a bad value, on a submit answers 400 with
``errors["X-Reference-Fault"]``; in the settings it raises ``ValueError``.

Other rules: a job's state depends only on the time since submit (``queued`` for 5 %,
then 4-5 named phases, then ``completed``); ``progress`` changes only at those boundaries.
``?wait=N`` (fractional, capped by ``max_wait_seconds``) holds the poll until the stage
changes, the job is cancelled, or N seconds pass; a terminal job answers at once.
``DELETE`` freezes a running job as ``cancelled`` (a job that already ended keeps its
status) and answers 204. A job that ended more than ``ttl_seconds`` ago answers 404.
Invalid submit bodies answer ``400 {"detail", "errors": {field: message}}``.
"""

from .app import ReferenceApp, create_app
from .settings import ReferenceSettings
from .store import Stats

__all__ = ["ReferenceApp", "ReferenceSettings", "Stats", "create_app"]
