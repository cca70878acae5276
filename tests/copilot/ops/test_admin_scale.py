"""The job changelist at scale: each search term through its index, estimated counts, and a
fixed number of queries however many jobs a page shows."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from copilot.jobs.models import GenerationJob
from copilot.ops.changelist import EstimatedCountPaginator

pytestmark = [pytest.mark.django_db, pytest.mark.alldb]

URL = "admin:copilot_generationjob_changelist"
TABLE = GenerationJob._meta.db_table


@pytest.fixture
def jobs(user, other_user) -> dict[str, GenerationJob]:
    make = GenerationJob.objects.create
    return {
        "pelican": make(
            owner=user,
            kind="decompose",
            upstream_job_id="up-123",
            request={"description": "Watch the pelican colony each morning"},
        ),
        "heron": make(
            owner=other_user,
            kind="generate",
            upstream_job_id="up-456",
            request={"instructions": {"goal": "Count herons on the river"}},
        ),
    }


def search(client, term: str) -> tuple[set[str], list[str]]:
    """The job ids the changelist finds for ``term``, and the SQL it ran."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(URL), {"q": term})
    assert response.status_code == 200
    found = {str(job.id) for job in response.context["cl"].result_list}
    return found, [q["sql"] for q in queries.captured_queries]


def job_queries(sql: list[str]) -> list[str]:
    return [s for s in sql if f'FROM "{TABLE}"' in s]


def test_a_job_id_is_a_primary_key_lookup(admin_client, jobs):
    job = jobs["pelican"]
    found, sql = search(admin_client, str(job.id))
    assert found == {str(job.id)}
    assert not any("LIKE" in s.upper() for s in job_queries(sql))  # no scan of the text
    found, _ = search(admin_client, str(uuid.uuid4()))
    assert found == set()


def test_an_upstream_id_is_exact(admin_client, jobs):
    found, sql = search(admin_client, "up-456")
    assert found == {str(jobs["heron"].id)}
    assert any(f'"{TABLE}"."upstream_job_id" = ' in s for s in job_queries(sql))
    assert search(admin_client, "up-4")[0] == set()  # not a prefix or substring search


def test_a_username_prefix_looks_up_users_first(admin_client, jobs):
    found, sql = search(admin_client, "bo")  # other_user is bob
    assert found == {str(jobs["heron"].id)}
    users = [s for s in sql if 'FROM "auth_user"' in s and "LIKE" in s.upper()]
    assert users, "the prefix is matched in the users table"
    assert any(f'"{TABLE}"."owner_id" IN (' in s for s in job_queries(sql))
    assert not any('"AUTH_USER"."USERNAME" LIKE' in s.upper() for s in job_queries(sql))


def test_a_word_of_the_request(admin_client, jobs):
    assert search(admin_client, "herons")[0] == {str(jobs["heron"].id)}
    assert search(admin_client, "pelican colony")[0] == {str(jobs["pelican"].id)}
    assert search(admin_client, "albatross")[0] == set()
    found, sql = search(admin_client, "pelican")
    assert found == {str(jobs["pelican"].id)}
    if connection.vendor == "postgresql":
        assert any("jsonb_to_tsvector" in s for s in job_queries(sql))


@pytest.mark.postgres
def test_the_word_search_and_the_lists_read_their_indexes(jobs):
    from copilot.ops.job_search import jobs_search

    def plan(queryset, *, in_order: bool = False) -> str:
        with connection.cursor() as cursor:
            # Tiny tables: make the planner show which index would serve the query (for a
            # list, one that gives its order: a sort is what a deep page cannot afford).
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"SET LOCAL enable_sort = {'off' if in_order else 'on'}")
            return queryset.explain()

    found = jobs_search(jobs=GenerationJob.objects.all(), term="pelican")
    assert "job_request_words" in plan(found)
    assert "upstream_job_id" in plan(jobs_search(jobs=GenerationJob.objects.all(), term="up-1"))
    by_status = GenerationJob.objects.filter(status="queued").order_by("-created_at", "-id")
    assert "job_status_created" in plan(by_status[:51], in_order=True)
    by_kind = GenerationJob.objects.filter(kind="generate").order_by("-created_at", "-id")
    assert "job_kind_created" in plan(by_kind[:51], in_order=True)


def test_the_owner_filter_is_a_username_box_not_a_list_of_owners(admin_client, jobs):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse(URL))
    assert not any("DISTINCT" in q["sql"].upper() for q in queries.captured_queries)
    assert 'name="owner"' in response.content.decode()
    filtered = admin_client.get(reverse(URL), {"owner": "bob", "kind__exact": "generate"})
    assert [j.id for j in filtered.context["cl"].result_list] == [jobs["heron"].id]
    assert 'name="kind__exact" value="generate"' in filtered.content.decode()  # kept
    assert admin_client.get(reverse(URL), {"owner": "nobody"}).context["cl"].result_count == 0


def test_a_page_of_jobs_takes_the_same_few_queries(
    admin_client, user, django_assert_max_num_queries
):
    GenerationJob.objects.bulk_create(
        GenerationJob(owner=user, kind="decompose", request={"description": f"goal {i}"})
        for i in range(60)
    )
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse(URL))
    assert len(response.context["cl"].result_list) == 50  # a page (list_per_page)
    assert "about" not in response.content.decode().split('class="paginator"')[1][:200]


def test_deep_pages_read_their_ids_first(admin_client, user, monkeypatch):
    made = GenerationJob.objects.bulk_create(
        GenerationJob(owner=user, kind="decompose") for _ in range(250)
    )
    monkeypatch.setattr(EstimatedCountPaginator, "deferred_from", 100)
    newest_first = sorted(made, key=lambda j: (j.created_at, j.id), reverse=True)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse(URL), {"p": "5"})  # jobs 201-250, 50 a page
    assert [j.id for j in response.context["cl"].result_list] == [j.id for j in newest_first[200:]]
    sql = job_queries([q["sql"] for q in queries.captured_queries])
    (ids,) = [s for s in sql if "OFFSET 200" in s]  # the offset walks ids, not whole rows
    assert ids.startswith(f'SELECT "{TABLE}"."id" AS "pk" FROM')


@pytest.mark.postgres
def test_a_large_count_is_the_planner_estimate(admin_client, user, monkeypatch):
    GenerationJob.objects.bulk_create(
        GenerationJob(owner=user, kind="decompose", status="completed") for _ in range(40)
    )
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{TABLE}"')
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [TABLE])
        reltuples = int(cursor.fetchone()[0])
    assert reltuples == 40
    monkeypatch.setattr(EstimatedCountPaginator, "exact_below", 10)
    GenerationJob.objects.bulk_create(  # after ANALYZE: the estimate does not know them
        GenerationJob(owner=user, kind="decompose") for _ in range(5)
    )
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse(URL))
    cl = response.context["cl"]
    assert cl.result_count == 40 and cl.paginator.estimated
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    assert "about 40 generation jobs" in " ".join(response.content.decode().split())
    filtered = admin_client.get(reverse(URL), {"status__exact": "completed"}).context["cl"]
    assert filtered.paginator.estimated and filtered.result_count >= 10
    monkeypatch.setattr(EstimatedCountPaginator, "exact_below", 10_000)
    exact = admin_client.get(reverse(URL)).context["cl"]
    assert exact.result_count == 45 and not exact.paginator.estimated
