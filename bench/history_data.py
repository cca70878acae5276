"""A year of job history in PostgreSQL, written by set-based SQL (``bench/history.py``'s data).

Django's ORM would take hours for a million jobs and ten million events; ``INSERT … SELECT``
over ``generate_series`` takes minutes. The tables are the ones ``manage.py migrate`` made:
the fill drops their secondary indexes and unique constraints first and builds them again
afterwards from their own definitions (one sort each instead of ten million random index
inserts), and turns foreign-key triggers off for its session (``session_replication_role``:
every row it writes points at a row it wrote). Every NOT NULL column gets a value, and the
``(job, seq)`` numbering has no gap, so the portal reads these rows as it reads its own.

Jobs are spread evenly over the year before ``now``, oldest first (the table's physical order
is its insertion order, as in a real one); the newest few are active (queued or running,
created in the last minutes), the others terminal: 80 % completed, 10 % failed, 5 %
cancelled, 5 % timed out. Requests carry 12 words of text from :data:`WORDS` (what the
admin's search looks for), update and customize ones a small agent too.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime

#: The request texts' vocabulary: each word is in about one request in ten.
_VOCABULARY = (
    "every morning fetch the top tech news and email summary weekly report sales pipeline "
    "customer support tickets classify urgent route slack channel invoice extract totals "
    "spreadsheet update calendar meeting notes transcribe translate spanish french german "
    "summarize articles website monitor price alert competitor scrape product reviews "
    "sentiment dashboard chart github issues triage label pull requests review code "
    "security scan dependencies outdated notify team standup digest jira backlog groom "
    "recruiting resumes screen candidates schedule interviews onboarding checklist employee "
    "expense receipts approve budget forecast quarterly revenue marketing campaign twitter "
    "linkedin post draft blog seo keywords newsletter subscribers churn analysis survey "
    "feedback cluster themes podcast episode show transcript highlights video youtube "
    "thumbnail weather forecast travel flights hotel booking itinerary recipe grocery list "
    "fitness workout tracker habit reminder journal mood"
)
WORDS = _VOCABULARY.split()

#: The word ``bench/history.py`` searches for in the admin.
SEARCH_WORD = "invoice"

PASSWORD = "bench-history-password"
STAFF_USERNAME = "bench-staff"
ACTIVE_SHARE = 10_000  # one job in this many (at least 10) is active


@dataclass(frozen=True)
class FillSizes:
    jobs: int
    users: int
    events_per_job: int

    @property
    def active(self) -> int:
        return max(10, self.jobs // ACTIVE_SHARE)


def first_row(cursor) -> tuple:
    """The query's first row; raises when it found none (data not as the bench wrote it)."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("no row where the bench's data has one; refill without --keep")
    return row


def username(number: int) -> str:
    """The ``number``-th user's name (1-based): user00001, user00002, …"""
    return f"user{number:05d}"


def password_hash(password: str) -> str:
    """A ``pbkdf2_sha256`` hash Django's default hasher checks (no Django needed here)."""
    iterations, salt = 100_000, "benchhistorysalt"
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"


USERS_SQL = """
INSERT INTO auth_user (password, last_login, is_superuser, username, first_name, last_name,
                       email, is_staff, is_active, date_joined)
SELECT %(password)s, NULL, false, 'user' || lpad(u::text, 5, '0'), '', '',
       'user' || lpad(u::text, 5, '0') || '@example.com', false, true,
       %(now)s - interval '400 days'
FROM generate_series(1, %(users)s) AS u
"""
STAFF_SQL = """
INSERT INTO auth_user (password, last_login, is_superuser, username, first_name, last_name,
                       email, is_staff, is_active, date_joined)
VALUES (%(password)s, NULL, true, %(staff)s, '', '', 'staff@example.com', true, true,
        %(now)s - interval '400 days')
"""

# The inner query draws each row's random numbers once (OFFSET 0 keeps it from being
# flattened into the outer one, which would draw them again per use).
JOBS_SQL = """
INSERT INTO copilot_generationjob (
    id, owner_id, kind, request, status, upstream_job_id, progress, result, error_type,
    error_message, attempt, notify_email, notified_attempt, cancel_requested_at, lease_owner,
    lease_expires_at, last_event_seq, created_at, started_at, finished_at, updated_at)
SELECT
    gen_random_uuid(), owner_id, kind,
    CASE kind
        WHEN 'decompose' THEN jsonb_build_object('description', txt)
        WHEN 'generate' THEN jsonb_build_object('instructions', txt)
        WHEN 'update' THEN jsonb_build_object('update_request', txt, 'current_agent_json', agent)
        ELSE jsonb_build_object('modification_request', txt, 'template_agent_json', agent)
    END,
    status,
    CASE WHEN status = 'queued' THEN '' ELSE 'agj_' || substr(md5(i::text || 'up'), 1, 24) END,
    CASE WHEN status = 'completed' THEN '{"percent": 100, "phase": "done"}'::jsonb
         ELSE '{"percent": 40, "phase": "generating"}'::jsonb END,
    CASE WHEN status <> 'completed' THEN NULL
         WHEN kind = 'decompose' THEN jsonb_build_object(
             'type', 'instructions', 'steps', jsonb_build_array(txt, 'Send the result'))
         ELSE jsonb_build_object('type', 'agent', 'agent', agent) END,
    CASE status WHEN 'failed' THEN 'upstream_error' WHEN 'timed_out' THEN 'timed_out'
         ELSE '' END,
    CASE status WHEN 'failed' THEN 'The Agent Generator answered 502: bad gateway'
         WHEN 'timed_out' THEN 'No answer within the polling budget (30 min)' ELSE '' END,
    CASE WHEN r_attempt < 0.05 THEN 2 ELSE 1 END, false, 0,
    CASE WHEN status = 'cancelled' THEN created_at + interval '2 minutes' END,
    '', NULL, %(events)s, created_at,
    CASE WHEN status = 'queued' THEN NULL ELSE created_at + interval '2 seconds' END,
    finished_at, coalesce(finished_at, created_at)
FROM (
    SELECT g.*,
        CASE WHEN status IN ('queued', 'running') THEN NULL
             ELSE created_at + make_interval(secs => 60 + r_time * 1740) END AS finished_at,
        jsonb_build_object(
            'name', 'Agent ' || i, 'description', left(txt, 40),
            'nodes', jsonb_build_array(
                jsonb_build_object('id', 'n1', 'block', 'input'),
                jsonb_build_object('id', 'n2', 'block', 'llm', 'prompt', txt),
                jsonb_build_object('id', 'n3', 'block', 'email')),
            'links', jsonb_build_array(
                jsonb_build_object('source', 'n1', 'sink', 'n2'),
                jsonb_build_object('source', 'n2', 'sink', 'n3'))) AS agent
    FROM (
        SELECT i,
            %(first_user)s + floor(random() * %(users)s)::int AS owner_id,
            CASE WHEN r_kind < 0.4 THEN 'decompose' WHEN r_kind < 0.7 THEN 'generate'
                 WHEN r_kind < 0.85 THEN 'update' ELSE 'customize' END AS kind,
            CASE WHEN i > %(jobs)s - %(active)s THEN
                     CASE WHEN i %% 2 = 0 THEN 'queued' ELSE 'running' END
                 WHEN r_status < 0.80 THEN 'completed' WHEN r_status < 0.90 THEN 'failed'
                 WHEN r_status < 0.95 THEN 'cancelled' ELSE 'timed_out' END AS status,
            CASE WHEN i > %(jobs)s - %(active)s
                 THEN %(now)s - make_interval(secs => (%(jobs)s - i + 1) * 5)
                 ELSE %(now)s - make_interval(days => 365)
                      + make_interval(secs => 365 * 86400.0 * i / %(jobs)s) END AS created_at,
            r_attempt, r_time, {text} AS txt
        FROM (
            SELECT i, random() AS r_kind, random() AS r_status, random() AS r_attempt,
                   random() AS r_time, %(words)s::text[] AS w
            FROM generate_series(1, %(jobs)s) AS i
            OFFSET 0
        ) AS drawn
        OFFSET 0
    ) AS g
    OFFSET 0
) AS j
"""

TEXT_SQL = "concat_ws(' ', " + ", ".join(["w[1 + floor(random() * cardinality(w))::int]"] * 12)
TEXT_SQL += ")"

# Event 1 is the job's submission, the last one its end (for terminal jobs), the others
# progress; created_at runs evenly from the job's creation to its end (or to now).
EVENTS_SQL = """
INSERT INTO copilot_jobevent (job_id, seq, type, data, created_at)
SELECT j.id, s,
    CASE WHEN s = 1 THEN 'status'
         WHEN s = %(events)s AND j.status = 'completed' THEN 'result'
         WHEN s = %(events)s AND j.status IN ('failed', 'timed_out') THEN 'error'
         WHEN s = %(events)s AND j.status = 'cancelled' THEN 'status'
         ELSE 'progress' END,
    CASE WHEN s = 1 THEN '{"status": "queued", "terminal": false}'::jsonb
         WHEN s = %(events)s AND j.status = 'completed'
             THEN '{"status": "completed", "terminal": true}'::jsonb
         WHEN s = %(events)s AND j.status IN ('failed', 'timed_out')
             THEN jsonb_build_object('status', j.status, 'terminal', true,
                                     'error_type', j.error_type, 'message', j.error_message)
         WHEN s = %(events)s AND j.status = 'cancelled'
             THEN '{"status": "cancelled", "terminal": true}'::jsonb
         ELSE jsonb_build_object('percent', (s * 100) / %(events)s, 'phase', 'generating') END,
    j.created_at + (coalesce(j.finished_at, %(now)s) - j.created_at) * s / %(events)s
FROM copilot_generationjob AS j CROSS JOIN generate_series(1, %(events)s) AS s
"""

TABLES = ("copilot_generationjob", "copilot_jobevent")

SECONDARY_SQL = """
SELECT 'index', i.indexname, i.indexdef FROM pg_indexes AS i
WHERE i.tablename = %(table)s AND i.schemaname = current_schema()
  AND i.indexname NOT IN (
      SELECT conname FROM pg_constraint WHERE conrelid = %(table)s::regclass)
UNION ALL
SELECT 'constraint', c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint AS c
WHERE c.conrelid = %(table)s::regclass AND c.contype = 'u'
"""


def fill(*, url: str, sizes: FillSizes, now: datetime, say) -> dict[str, float]:
    """Fill the migrated, empty database at ``url``; returns seconds per step."""
    import psycopg

    steps: dict[str, float] = {}

    def step(name: str) -> None:
        steps[name] = time.monotonic() - started
        say(f"  {name}: {steps[name]:.1f} s")

    params = {
        "now": now,
        "users": sizes.users,
        "jobs": sizes.jobs,
        "events": sizes.events_per_job,
        "active": sizes.active,
        "words": list(WORDS),
        "password": password_hash(PASSWORD),
        "staff": STAFF_USERNAME,
    }
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no per-row FK triggers
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET work_mem = '256MB'")
        started = time.monotonic()
        secondary = []
        for table in TABLES:
            for kind, name, definition in conn.execute(SECONDARY_SQL, {"table": table}):
                secondary.append((table, kind, name, definition))
                if kind == "index":
                    conn.execute(f'DROP INDEX "{name}"')
                else:
                    conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
        with conn.transaction():
            conn.execute(USERS_SQL, params)
            conn.execute(STAFF_SQL, params)
        first_user = first_row(
            conn.execute("SELECT min(id) FROM auth_user WHERE username LIKE 'user%%'")
        )[0]
        started = time.monotonic()
        conn.execute(JOBS_SQL.replace("{text}", TEXT_SQL), {**params, "first_user": first_user})
        step("jobs")
        started = time.monotonic()
        conn.execute(EVENTS_SQL, params)
        step("events")
        started = time.monotonic()
        for table, kind, name, definition in secondary:
            if kind == "index":
                conn.execute(definition)
            else:
                conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
        step(f"indexes and constraints ({len(secondary)})")
        started = time.monotonic()
        conn.execute("VACUUM (ANALYZE)")
        step("vacuum analyze")
    return steps
