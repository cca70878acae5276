"""The answer to a login that django-axes refused: the login page again, saying why.

After ``AXES_FAILURE_LIMIT`` failed logins for one username, django-axes refuses that
username's logins (even with the right password) until ``AXES_COOLOFF_TIME`` after its last
counted failure; its middleware then replaces the login view's page with
:func:`lockout_response` (``AXES_LOCKOUT_CALLABLE``): the same login form, in the same look
(the portal's for ``/accounts/login/``, the admin's for ``/admin/login/``), with a note saying
how long the username stays locked, with status 429 and a ``Retry-After`` header.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

logger = logging.getLogger(__name__)

#: Too Many Requests: this username has tried too often; it may try again later (Retry-After).
LOCKOUT_STATUS = 429


def lock_ends_at(*, username: str, cool_off: timedelta) -> datetime:
    """When ``username``'s lock ends: its last counted failure plus the cool-off (at the latest)."""
    last = AccessAttempt.objects.filter(username=username).aggregate(last=Max("attempt_time"))
    return (last["last"] or timezone.now()) + cool_off


def lockout_response(
    request: HttpRequest, original_response: object = None, credentials: object = None
) -> HttpResponse:
    """The login page with the lockout note (``AXES_LOCKOUT_CALLABLE``).

    Reads the username and ``next`` from the refused POST only: django-axes passes its other
    arguments in a different order on the sync and the async path.
    """
    username = request.POST.get("username", "").strip()
    cool_off = get_cool_off(request) or timedelta(0)
    seconds = (lock_ends_at(username=username, cool_off=cool_off) - timezone.now()).total_seconds()
    minutes = max(1, math.ceil(seconds / 60))
    redirect_to = request.POST.get(REDIRECT_FIELD_NAME, request.GET.get(REDIRECT_FIELD_NAME, ""))
    match = request.resolver_match
    in_admin = match is not None and "admin" in match.namespaces
    logger.warning(
        "login refused, username locked out: username=%r path=%s minutes=%s",
        username,
        request.path,
        minutes,
    )
    context: dict[str, object] = {
        "lockout": {"username": username, "minutes": minutes},
        REDIRECT_FIELD_NAME: redirect_to,
    }
    if in_admin:
        context.update(admin.site.each_context(request))
        context.update(
            form=AdminAuthenticationForm(request, initial={"username": username}),
            title="Log in",
            app_path=request.get_full_path(),
            username=request.user.get_username(),
        )
        context[REDIRECT_FIELD_NAME] = redirect_to or reverse("admin:index")
        template = "admin/locked_out.html"
    else:
        context["form"] = AuthenticationForm(request, initial={"username": username})
        template = "registration/locked_out.html"
    response = render(request, template, context, status=LOCKOUT_STATUS)
    response["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response
