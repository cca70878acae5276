"""Ours, with the bench's publish endpoint: ``daphne bench.anchors.portal_asgi:application``.

Everything but ``/__bench/…`` is ``copilot.asgi.application`` untouched. A publish appends
the event to the job's log and publishes it through the server's own channel layer, as the
embedded runner would (the in-memory layer reaches only its own process).
"""

from bench.anchors.endpoint import BenchEndpoint
from bench.anchors.publishers import portal_publish
from copilot.asgi import application as portal_application

application = BenchEndpoint(app=portal_application, publish=portal_publish)
