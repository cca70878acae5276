"""Job history at scale: the pages admins and users open, and pruning, on a year of jobs.

    python bench/history.py                        # 1,000,000 jobs, 10,000,000 events
    python bench/history.py --keep                 # the same, reusing the filled template
    python bench/history.py --quick                # 20,000 jobs, a smoke run

PostgreSQL only. The data (``bench/history_data.py``: N jobs over a year for U users, E events
each, set-based SQL) is written once into a template database (the target's name + ``_tpl_``
+ the sizes); each run copies it to the target (``--database-url``, dropped and recreated:
pruning destroys half of it), runs ``manage.py migrate`` on the copy (a change that adds
indexes is timed here, on a filled table), and ANALYZEs it. ``--keep`` reuses a template of
the same sizes instead of filling a new one. ``bench/history_pages.py`` reads the pages.

The portal is served by Daphne on a free 127.0.0.1 port with DEBUG off and no runner in the
process (nothing touches the active jobs). A staff user and a normal user log in through the
login form; two API tokens come from ``manage.py create_api_token``. Each URL is fetched once
(not counted) and then 5 times: p50 and max. Deep pages of the portal and the API are reached
by following their "next" links ``--deep-pages`` times, so they work whatever the pagination
(page numbers or cursors); the admin's is ``?p=1000`` (less with fewer jobs). Its filters are
the links of its sidebar, whatever they are.

Then ``manage.py prune_jobs --older-than 180d`` runs while a thread appends events to one
active job in a loop (the runner's one-statement append, ``copilot/jobs/fastpath.py``), each
append timed: the table says how long the prune took and the longest append wait.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import (
    PYTHON,
    ROOT,
    SetupError,
    command_line,
    free_port,
    machine,
    ms,
    portal_env,
    running,
    table,
)
from bench.history_data import (
    PASSWORD,
    SEARCH_WORD,
    STAFF_USERNAME,
    FillSizes,
    fill,
    first_row,
    username,
)
from bench.history_pages import admin_filters, api_next, html_next, walk

REPEATS = 5


def say(text: str) -> None:
    print(text, flush=True)


# -- databases -----------------------------------------------------------------------------


@dataclass
class Server:
    """The PostgreSQL server of ``--database-url``, reached through its ``postgres`` db."""

    url: str

    @property
    def admin_url(self) -> str:
        return self.url.rsplit("/", 1)[0] + "/postgres"

    @property
    def name(self) -> str:
        return urlsplit(self.url).path.lstrip("/")

    def url_of(self, name: str) -> str:
        return self.url.rsplit("/", 1)[0] + "/" + name

    def sql(self, statement: str, params: Sequence[object] | None = None) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def exists(self, name: str) -> bool:
        return bool(self.sql("SELECT 1 FROM pg_database WHERE datname = %s", [name]))

    def drop(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(*args: str, url: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """``python manage.py *args`` on the database at ``url``; raises SetupError on failure."""
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=bench_env(url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode:
        raise SetupError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def bench_env(url: str) -> dict[str, str]:
    return portal_env(
        database_url=url,
        COPILOT_RUNNER_IN_PROCESS="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
    )


def template_ready(server: Server, *, sizes: FillSizes, keep: bool) -> tuple[str, str]:
    """The filled template's name, filled now unless ``keep`` finds one; and what happened."""
    name = f"{server.name}_tpl_{sizes.jobs}j_{sizes.users}u_{sizes.events_per_job}e"
    if keep and server.exists(name):
        return name, "reused"
    server.drop(name)
    server.sql(f'CREATE DATABASE "{name}"')
    url = server.url_of(name)
    started = time.monotonic()
    manage("migrate", "--noinput", url=url)
    say(f"filling {name} (migrated in {time.monotonic() - started:.1f} s)")
    started = time.monotonic()
    steps = fill(url=url, sizes=sizes, now=datetime.now(UTC), say=say)
    total = time.monotonic() - started
    detail = ", ".join(f"{k} {v:.0f} s" for k, v in steps.items())
    return name, f"filled in {total:.0f} s ({detail})"


# -- HTTP ----------------------------------------------------------------------------------


def logged_in(base: str, *, user: str) -> httpx.Client:
    """An httpx client logged in as ``user`` through the login form."""
    client = httpx.Client(base_url=base, timeout=600, follow_redirects=False)
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if page.status_code != 200 or token is None:
        raise SetupError(f"login page answered {page.status_code}")
    answer = client.post(
        "/accounts/login/",
        data={"username": user, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": base + "/accounts/login/"},
    )
    if answer.status_code != 302 or "sessionid" not in client.cookies:
        raise SetupError(f"login of {user} answered {answer.status_code}")
    return client


def token_client(base: str, *, url: str, user: str) -> httpx.Client:
    key = manage("create_api_token", "--user", user, "--name", "bench", url=url).stdout.strip()
    return httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {key}"})


@dataclass
class Timing:
    label: str
    path: str
    seconds: list[float] = field(default_factory=list)
    status: int = 0
    note: str = ""


def timed(label: str, client, path: str, *, note: str = "") -> Timing:
    """One unmeasured GET, then REPEATS measured ones."""
    result = Timing(label=label, path=path, note=note)
    client.get(path)
    for _ in range(REPEATS):
        started = time.perf_counter()
        answer = client.get(path)
        result.seconds.append(time.perf_counter() - started)
        result.status = answer.status_code
    say(f"  {label}: p50 {ms(statistics.median(result.seconds))} ms ({result.status})")
    return result


@dataclass
class Samples:
    """What the data looks like where the URLs need it."""

    job_id: str
    upstream_id: str
    owner: str
    searched_user: str
    active_job: str


def samples(url: str) -> Samples:
    import psycopg

    with psycopg.connect(url) as conn:
        job_id, upstream, owner = first_row(
            conn.execute(
                "SELECT j.id, j.upstream_job_id, u.username FROM copilot_generationjob j "
                "JOIN auth_user u ON u.id = j.owner_id WHERE j.status = 'completed' "
                "ORDER BY j.created_at DESC OFFSET 5000 LIMIT 1"
            )
        )
        active = first_row(
            conn.execute("SELECT id FROM copilot_generationjob WHERE status = 'running' LIMIT 1")
        )[0]
    return Samples(str(job_id), upstream, owner, username(500), str(active))


def measure(
    base: str, *, url: str, deep_pages: int, admin_page: int, data: Samples
) -> list[Timing]:
    staff = logged_in(base, user=STAFF_USERNAME)
    user = logged_in(base, user=data.owner)
    api_user = token_client(base, url=url, user=data.owner)
    api_staff = token_client(base, url=url, user=STAFF_USERNAME)
    rows: list[Timing] = []
    say("portal and API lists:")
    rows.append(timed(f"portal: {data.owner}'s /jobs/", user, "/jobs/"))
    rows.append(timed("portal: staff /jobs/", staff, "/jobs/"))
    rows.append(timed("portal: staff /jobs/, failed", staff, "/jobs/?status=failed"))
    rows.append(
        timed(
            f"portal: staff /jobs/, owner {data.searched_user}",
            staff,
            f"/jobs/?owner={data.searched_user}",
        )
    )
    deep, took = walk(staff, "/jobs/", pages=deep_pages, next_of=html_next)
    note = f"{deep_pages} next links walked in {took:.0f} s"
    rows.append(timed(f"portal: staff /jobs/, page {deep_pages + 1}", staff, deep, note=note))
    rows.append(timed(f"API: {data.owner}'s /api/jobs/", api_user, "/api/jobs/"))
    rows.append(timed("API: staff /api/jobs/", api_staff, "/api/jobs/"))
    rows.append(timed("API: staff /api/jobs/, failed", api_staff, "/api/jobs/?status=failed"))
    deep, took = walk(api_staff, "/api/jobs/", pages=deep_pages, next_of=api_next)
    note = f"{deep_pages} next links walked in {took:.0f} s"
    rows.append(timed(f"API: staff /api/jobs/, page {deep_pages + 1}", api_staff, deep, note=note))
    say("admin:")
    changelist = "/admin/copilot/generationjob/"
    first = staff.get(changelist)
    if first.status_code != 200:
        raise SetupError(f"admin changelist answered {first.status_code}")
    rows.append(timed("admin: changelist", staff, changelist))
    for label, query in admin_filters(first.text, typed=data.searched_user):
        rows.append(timed(f"admin: filter {label}", staff, changelist + query))
    rows.append(timed(f"admin: page {admin_page:,}", staff, f"{changelist}?p={admin_page}"))
    searches = [
        ("job id", data.job_id),
        ("upstream id", data.upstream_id),
        ("username", data.searched_user),
        (f"word {SEARCH_WORD!r}", SEARCH_WORD),
    ]
    for label, term in searches:
        rows.append(timed(f"admin: search {label}", staff, f"{changelist}?q={quote(term)}"))
    rows.append(timed("admin: a job's change page", staff, f"{changelist}{data.job_id}/change/"))
    rows.append(timed("portal: a job's page (owner)", user, f"/jobs/{data.job_id}/"))
    for client in (staff, user, api_user, api_staff):
        client.close()
    return rows


@dataclass
class Writer:
    """Appends events to one active job in a loop, timing each append (a thread)."""

    url: str
    job_id: str
    waits: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        import psycopg

        statement = (
            "WITH job AS (UPDATE copilot_generationjob SET last_event_seq = last_event_seq + 1,"
            " updated_at = now() WHERE id = %s RETURNING id, last_event_seq) "
            "INSERT INTO copilot_jobevent (job_id, seq, type, data, created_at) "
            "SELECT id, last_event_seq, 'progress', '{\"percent\": 50}', now() FROM job"
        )
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                started = time.perf_counter()
                conn.execute(statement, [self.job_id])
                self.waits.append(time.perf_counter() - started)
                time.sleep(0.05)


def prune(url: str, *, active_job: str, extra: Sequence[str] = ()) -> dict[str, object]:
    """``prune_jobs --older-than 180d *extra`` beside a Writer: its time and the writes' waits."""
    writer = Writer(url=url, job_id=active_job)
    thread = threading.Thread(target=writer.run, name="event-writer", daemon=True)
    thread.start()
    time.sleep(2)
    started = time.monotonic()
    result = manage("prune_jobs", "--older-than", "180d", *extra, url=url, timeout=3600)
    seconds = time.monotonic() - started
    time.sleep(1)
    writer.stop.set()
    thread.join(30)
    output = result.stdout.strip().splitlines()[-1:] or [""]
    deleted = re.fullmatch(r"deleted (\d+) job\(s\) and (\d+) event\(s\)", output[0])
    if deleted is None:
        raise SetupError(f"prune_jobs said {output[0]!r}, not what it deleted")
    return {
        "jobs": int(deleted[1]),
        "events": int(deleted[2]),
        "seconds": seconds,
        "writes": len(writer.waits),
        "write_p50": statistics.median(writer.waits) if writer.waits else float("nan"),
        "write_max": max(writer.waits, default=float("nan")),
    }


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The data's sizes and the target database (also bench/history_prune.py's)."""
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--events-per-job", type=int, default=10)
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/history_bench",
        help="dropped and recreated from the filled template (named after it) on every run",
    )


@dataclass
class Copy:
    """A fresh copy of the template: how long the copy and its migrations took."""

    copied: float
    migrated: float
    applied: list[str]


def fresh_copy(server: Server, *, template: str) -> Copy:
    """The target dropped, copied from the template, migrated and ANALYZEd."""
    server.drop(server.name)
    started = time.monotonic()
    server.sql(f'CREATE DATABASE "{server.name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    copied = time.monotonic() - started
    started = time.monotonic()
    migrated = manage("migrate", "--noinput", url=server.url).stdout
    applied = [line.strip() for line in migrated.splitlines() if "Applying" in line]
    migrate_seconds = time.monotonic() - started
    import psycopg

    with psycopg.connect(server.url, autocommit=True) as conn:  # the copy, not the server's
        conn.execute("ANALYZE")
    return Copy(copied=copied, migrated=migrate_seconds, applied=applied)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--keep", action="store_true", help="reuse the filled template")
    parser.add_argument("--skip-prune", action="store_true")
    parser.add_argument("--deep-pages", type=int, default=1000, help="next links to a deep page")
    parser.add_argument("--quick", action="store_true", help="20,000 jobs, 20 deep pages")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options = build_parser().parse_args(argv)
    if options.quick:
        options.jobs, options.deep_pages = 20_000, 20
    sizes = FillSizes(options.jobs, options.users, options.events_per_job)
    server = Server(options.database_url)
    if not server.url.startswith(("postgres://", "postgresql://")):
        raise SetupError("--database-url must name a PostgreSQL database")
    say(machine())
    template, how = template_ready(server, sizes=sizes, keep=options.keep)
    say(f"template {template}: {how}")
    copy = fresh_copy(server, template=template)
    applied = copy.applied
    db_size = server.sql("SELECT pg_size_pretty(pg_database_size(%s))", [server.name])[0][0]
    say(
        f"copied in {copy.copied:.0f} s; migrate {copy.migrated:.1f} s {applied or '(nothing new)'}"
    )
    say(f"database {server.name}: {db_size}")
    data = samples(server.url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "copilot.asgi:application"]
    with running(name="daphne", args=args, env=bench_env(server.url), port=port):
        rows = measure(
            base,
            url=server.url,
            deep_pages=options.deep_pages,
            admin_page=min(1000, max(1, options.jobs // 100)),  # 50 a page: mid-list at most
            data=data,
        )
    pruned = None if options.skip_prune else prune(server.url, active_job=data.active_job)
    report(options, argv, rows, pruned, how=how, db_size=db_size, applied=applied)
    return 0


def report(options, argv, rows, pruned, *, how: str, db_size: str, applied: list[str]) -> None:
    say("")
    say(f"$ {command_line('bench/history.py', argv)}")
    say(machine())
    say(
        f"data: {options.jobs:,} jobs, {options.users:,} users, {options.events_per_job} events "
        f"per job; database {db_size}; template {how}; migrations applied to the copy: "
        f"{len(applied)}"
    )
    say("")
    say(
        table(
            ["what", "URL", "p50 (ms)", "max (ms)", "status"],
            (
                [
                    r.label + (f" ({r.note})" if r.note else ""),
                    f"`{r.path if len(r.path) < 70 else r.path[:67] + '…'}`",
                    ms(statistics.median(r.seconds)),
                    ms(max(r.seconds)),
                    r.status,
                ]
                for r in rows
            ),
        )
    )
    if pruned is not None:
        say("")
        say(
            f"prune_jobs --older-than 180d: {pruned['seconds']:.1f} s for {pruned['jobs']:,} "
            f"jobs and {pruned['events']:,} events; "
            f"concurrent event appends: {pruned['writes']}, p50 {ms(pruned['write_p50'])} ms, "
            f"longest wait {ms(pruned['write_max'])} ms"
        )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as exc:
        sys.exit(f"setup failed: {exc}")
