"""The reference Agent Generator: a small service that speaks the job protocol.

It ships with the project so the portal can be developed, tested and demonstrated
without the real (LLM-backed) service. Generation is rule-based and deterministic (see
``decompose.py``, ``agents.py``, ``edits.py``); jobs are timelines (``jobs.py``) kept in
memory, or also in a SQLite file with ``ReferenceSettings(store_path=...)`` (``--store
PATH``) so that they survive a restart (``store.py``).

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
``errors["X-Reference-Fault"]``; in the settings it raises ``ValueError``. A header may
ask for at most ``max_fault_seconds`` (default 3600) seconds of any fault (``duration``,
``slow-poll``, ``slow-submit``, ``retry-after``): a job is kept no longer than that plus
``ttl_seconds``, and a request held no longer. Faults never block the event loop: delays
are ``asyncio`` waits (that end when the client hangs up), and a job's ``duration`` is only
a timeline, nothing runs during it.

Limits
------
Every submit is checked against stated limits before any work is done on it; one over a
limit answers ``400 {"detail": "Over the limit max_nodes: at most 500 nodes.", "errors":
{field: "At most 500 nodes; it has 501."}}`` (the ``detail`` names the setting) and makes
no job. All are ``ReferenceSettings`` fields (``--max-nodes`` and so on on the command
line). The defaults are far above any agent the portal sends (a generated agent has one
node per step, a handful; a person may paste at most 1 MiB of agent, and write at most
10,000 characters of text) and small enough that the largest request is worked out in a
fraction of a second (``bench/reference_edits.py``: about 10 ms for an agent at the
limits, under 0.3 s for the worst 20,000-character texts found):

``max_body_bytes`` = 2 MiB
    the body, refused from its ``Content-Length`` or as soon as the bytes read pass it
    (the rest is never read): twice the largest agent the portal lets a person paste.
``max_json_depth`` = 32
    nesting of arrays and objects in the body, measured on the raw text before parsing
    (a request with an agent nests about 6 deep, plus what its inputs hold).
``max_nodes`` = 500, ``max_links`` = 2,000
    nodes and links of the agent sent (and of ``instructions.steps``); an edit that would
    make an agent over them (removing a node joins each of its sources to each of its
    sinks) is refused as soon as it gets there, named under the request's text field.
``max_text_chars`` = 20,000
    the description, goal, change request, or all step descriptions together: twice what
    the portal sends.
``max_edits`` = 50
    changes in one update or template-modification request (clauses such as "add ...;
    remove ..."); each is one pass over the agent.

Within them the work is linear in the agent and the text: nodes and links are found by
id or by one pass, never by scanning a list per item, and no pattern rescans a run of
text from each of its characters (see ``edits.py``, ``text.py``, ``extract.py``). The
agent is worked out in a worker thread, so the event loop answers other requests
meanwhile.

Other rules: a job's state depends only on the time since submit (``queued`` for 5 %,
then 4-5 named phases, then ``completed``); ``progress`` changes only at those boundaries.
``?wait=N`` (fractional, capped by ``max_wait_seconds``) holds the poll until the stage
changes, the job is cancelled, or N seconds pass; a terminal job answers at once.
``DELETE`` freezes a running job as ``cancelled`` (a job that already ended keeps its
status) and answers 204. A job that ended more than ``ttl_seconds`` ago answers 404.
Invalid submit bodies answer ``400 {"detail", "errors": {field: message}}``, as do bodies
over the limits above.
"""

from .app import ReferenceApp, create_app
from .settings import ReferenceSettings
from .store import Stats

__all__ = ["ReferenceApp", "ReferenceSettings", "Stats", "create_app"]
