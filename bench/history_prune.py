"""``prune_jobs`` alone on a year of jobs: bench/history.py's prune step, without the pages.

    python bench/history_prune.py                          # 1,000,000 jobs, the default batch
    python bench/history_prune.py --batch-size 5000 --runs 3

bench/history.py times the pages and then the prune, once; tuning the prune wants the prune
alone, repeated on the same data. Each run copies bench/history.py's filled template (filled
first if there is none: about 5 minutes for a million jobs) to the target (dropped and
recreated), migrates and ANALYZEs the copy and ends with a CHECKPOINT (every run starts
right after one), then runs ``manage.py prune_jobs --older-than 180d`` while
bench/history.py's writer appends an event to one running job every 50 ms. Per run it
prints the prune's time, what it deleted, the longest append wait, and the WAL the prune
wrote and the checkpoints it caused (``pg_stat_bgwriter``; the first change of a page after
a checkpoint writes the whole page to the WAL). The copy is dropped at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import SetupError, command_line, machine, ms
from bench.history import (
    Server,
    add_data_arguments,
    fresh_copy,
    prune,
    samples,
    say,
    template_ready,
)
from bench.history_data import FillSizes, first_row

STATS_SQL = "SELECT pg_current_wal_lsn(), checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"


def checkpointed_copy(server: Server, *, template: str) -> None:
    """bench/history.py's fresh copy, then a CHECKPOINT: every run starts right after one."""
    import psycopg

    fresh_copy(server, template=template)
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def wal_and_checkpoints(url: str) -> tuple[str, int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        lsn, checkpoints = first_row(conn.execute(STATS_SQL))
    return str(lsn), int(checkpoints)


def wal_written(url: str, *, since: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        sql = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)"
        return int(first_row(conn.execute(sql, [since]))[0])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--batch-size", type=int, help="passed to prune_jobs")
    parser.add_argument("--runs", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options = build_parser().parse_args(argv)
    server = Server(options.database_url)
    if not server.url.startswith(("postgres://", "postgresql://")):
        raise SetupError("--database-url must name a PostgreSQL database")
    sizes = FillSizes(options.jobs, options.users, options.events_per_job)
    extra = [] if options.batch_size is None else ["--batch-size", str(options.batch_size)]
    say(machine())
    template, how = template_ready(server, sizes=sizes, keep=True)
    say(f"template {template}: {how}")
    lines = []
    for run in range(1, options.runs + 1):
        started = time.monotonic()
        checkpointed_copy(server, template=template)
        say(f"run {run}: copy ready in {time.monotonic() - started:.0f} s; pruning")
        active = samples(server.url).active_job
        lsn, checkpoints = wal_and_checkpoints(server.url)
        pruned: dict[str, Any] = prune(server.url, active_job=active, extra=extra)
        wal = wal_written(server.url, since=lsn)
        checkpoints = wal_and_checkpoints(server.url)[1] - checkpoints
        lines.append(
            f"run {run}: {pruned['seconds']:.1f} s for {pruned['jobs']:,} jobs and "
            f"{pruned['events']:,} events; concurrent event appends: "
            f"{pruned['writes']}, p50 {ms(pruned['write_p50'])} ms, longest wait "
            f"{ms(pruned['write_max'])} ms; WAL {wal / 2**20:,.0f} MB, {checkpoints} checkpoint(s)"
        )
        say(lines[-1])
    server.drop(server.name)
    say("")
    say(f"$ {command_line('bench/history_prune.py', argv)}")
    say(machine())
    for line in lines:
        say(line)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as exc:
        sys.exit(f"setup failed: {exc}")
