"""Migration 0006 adds the history indexes to a table that already holds jobs."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.alldb]

BEFORE = [("copilot", "0005_job_notify_email")]
AFTER = [("copilot", "0006_job_history_indexes")]
INDEXES = {"job_created_id", "job_status_created", "job_kind_created"}


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


def index_names() -> set[str]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "copilot_generationjob")
    return {name for name, about in constraints.items() if about["index"]}


def test_the_indexes_are_built_on_a_filled_table(user):
    leaf = MigrationExecutor(connection).loader.graph.leaf_nodes("copilot")
    try:
        old_apps = migrate(BEFORE).loader.project_state(BEFORE).apps
        assert not INDEXES & index_names()
        Job = old_apps.get_model("copilot", "GenerationJob")
        Job.objects.bulk_create(
            Job(
                id=uuid.uuid4(),
                owner_id=user.pk,
                kind="decompose",
                status="completed",
                request={"description": f"watch pelican number {i}"},
                created_at=timezone.now(),
            )
            for i in range(300)
        )
        migrate(AFTER)
        names = index_names()
        assert names >= INDEXES
        if connection.vendor == "postgresql":
            assert "job_request_words" in names
            with connection.cursor() as cursor:
                cursor.execute(  # built CONCURRENTLY, and valid (not left half-built)
                    "SELECT bool_and(indisvalid) FROM pg_index WHERE indexrelid::regclass::text "
                    "IN ('job_created_id', 'job_status_created', 'job_kind_created', "
                    "'job_request_words')"
                )
                assert cursor.fetchone() == (True,)
        from copilot.jobs.models import GenerationJob

        assert GenerationJob.objects.filter(status="completed").count() == 300
    finally:
        migrate(leaf)
