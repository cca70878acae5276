from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Jobs and their event log. The label stays ``copilot`` (the package's name before it
    became :mod:`copilot.jobs`), so the migrations, tables and admin URLs keep their names."""

    name = "copilot.jobs"
    label = "copilot"
    verbose_name = "Agent copilot"
    default_auto_field = "django.db.models.BigAutoField"
