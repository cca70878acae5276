"""The copilot portal.

This package's own modules are the Django project's wiring (``settings``, ``config``,
``asgi``, ``urls``, ``routing``); each concern is a sub-package below them, importing only
downward:

- ``web``: the pages and the JSON API; ``ops``: the admin and the operators' commands;
- ``runner``: the polling loop that drives jobs under leases; ``stream``: the SSE stream;
- ``jobs``: the models and every write to a job (the Django app, label ``copilot``), with
  ``jobs.messaging``, the one seam through which a write wakes a runner or publishes an event.
"""
