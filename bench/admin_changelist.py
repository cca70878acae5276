"""Where an admin changelist's time goes: SQL against rendering, in-process.

Runs the job changelist (plain, filtered by status, searched by a username) through Django's
test client against an existing database (e.g. a copy of bench/history.py's template) and
prints each request's time, its query count and the time spent in SQL:

    createdb -h 127.0.0.1 -U postgres -T history_bench_tpl_1000000j_1000u_10e admin_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/admin_bench DEBUG=true \\
        ALLOWED_HOSTS=testserver .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/admin_bench DEBUG=true \\
        ALLOWED_HOSTS=testserver .venv/bin/python bench/admin_changelist.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench._support import ms, percentile  # noqa: E402
from bench.history_data import username  # noqa: E402

URLS = [
    "/admin/copilot/generationjob/",
    "/admin/copilot/generationjob/?status__exact=failed",
    f"/admin/copilot/generationjob/?q={username(500)}",
]
RUNS = 5


def main() -> None:
    users = get_user_model().objects
    staff = users.filter(is_superuser=True).first() or users.create_superuser(
        "bench-admin", "bench@example.com", None
    )
    client = Client()
    client.force_login(staff)
    for url in URLS:
        client.get(url)  # warm
        times, sql = [], []
        for _ in range(RUNS):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - start)
            sql.append(sum(float(q["time"]) for q in queries.captured_queries))
        print(
            f"{url}: {response.status_code}, p50 {ms(percentile(times, 0.5))} ms, "
            f"{len(queries.captured_queries)} queries, SQL {ms(percentile(sql, 0.5))} ms"
        )


if __name__ == "__main__":
    main()
