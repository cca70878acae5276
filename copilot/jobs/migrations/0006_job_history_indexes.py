"""Indexes for job history at a million jobs: keyset pages, filters, and the admin's search.

- ``(created_at DESC, id DESC)``, alone and after ``status`` and after ``kind``: the lists'
  keyset pages, the admin's pages (filtered or not) and pruning's walk, each an index range
  read for a page's rows (``owner`` already has ``job_owner_created``);
- on PostgreSQL, a GIN index over the words of the request's strings
  (``jsonb_to_tsvector('simple', request, '["string"]')``), which the admin's search of
  "a word of the request" uses (``copilot.ops.job_search`` spells the same expression).

On PostgreSQL every index is built ``CONCURRENTLY`` (so ``atomic = False``): a plain
``CREATE INDEX`` holds a SHARE lock on the jobs table for the whole build (seconds per index
at a million jobs), during which no job can be submitted and no runner can save a job's
progress. The price: a build that fails leaves an INVALID index behind, to be dropped
(``DROP INDEX CONCURRENTLY name``) before running the migration again (docs/deploy.md).
SQLite builds them the ordinary way.
"""

from django.db import migrations, models

REQUEST_WORDS = "job_request_words"
TABLE = "copilot_generationjob"


class AddIndexConcurrentlyOnPostgres(migrations.AddIndex):
    """``AddIndex``, built ``CONCURRENTLY`` on PostgreSQL (django.contrib.postgres'
    ``AddIndexConcurrently`` needs psycopg installed, and refuses SQLite)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.add_index(model, self.index, concurrently=True)
        else:
            schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.remove_index(model, self.index, concurrently=True)
        else:
            schema_editor.remove_index(model, self.index)


def add_request_words(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite's admin search scans the request's text instead
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {REQUEST_WORDS} ON {TABLE} USING gin "
        "(jsonb_to_tsvector('simple'::regconfig, request, '[\"string\"]'::jsonb))"
    )


def remove_request_words(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {REQUEST_WORDS}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("copilot", "0005_job_notify_email"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="generationjob",
            index=models.Index(fields=["-created_at", "-id"], name="job_created_id"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="generationjob",
            index=models.Index(fields=["status", "-created_at", "-id"], name="job_status_created"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="generationjob",
            index=models.Index(fields=["kind", "-created_at", "-id"], name="job_kind_created"),
        ),
        migrations.RunPython(add_request_words, remove_request_words, elidable=False),
    ]
