from django.apps import AppConfig


class OpsConfig(AppConfig):
    """The operators' doors: the Django admin and the management commands (no models)."""

    name = "copilot.ops"
    label = "copilot_ops"
    verbose_name = "Agent copilot operations"

    def ready(self) -> None:
        from copilot.ops import checks  # noqa: F401  (registers the deploy checks)
