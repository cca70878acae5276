"""The portal's views: HTML pages (:mod:`.pages`); the JSON API is
:mod:`copilot.web.api`.

The job event stream (``/jobs/<id>/events``) is not here: a Channels consumer serves it, routed
in :mod:`copilot.routing` before Django.
"""
