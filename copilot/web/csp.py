"""The Content-Security-Policy header (django-csp), with a nonce on every page.

django-csp puts ``'nonce-…'`` in the policy only when something read ``request.csp_nonce``
while the response was made. This middleware reads it for every HTML response, so every page's
policy has the same shape and any template (the portal's or an admin override) can add a
``<script nonce="{{ request.csp_nonce }}">`` or ``<style nonce=…>`` without other changes.
Other responses (JSON, files) get the policy without a nonce: they run no inline code.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware
from django.http import HttpRequest
from django.http.response import HttpResponseBase


class PageNonceCSPMiddleware(CSPMiddleware):
    """django-csp's ``CSPMiddleware``, with a nonce in every HTML page's policy."""

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if response.get("Content-Type", "").startswith("text/html"):
            str(request.csp_nonce)  # type: ignore[attr-defined]  # makes the nonce
        return super().process_response(request, response)
