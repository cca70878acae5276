"""The operators' and admins' doors: the Django admin and the management commands."""
