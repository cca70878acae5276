"""The API's django-ninja instance: its auth, parser, error handlers, docs and URLs.

``/api/openapi.json`` is the OpenAPI 3.1 schema and ``/api/docs`` its Swagger UI, served from
django-ninja's own static files (no CDN) under the portal's Content-Security-Policy, which
lets this one page show the images Swagger UI's stylesheet embeds as ``data:`` URLs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

from csp.decorators import csp_update
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, URLResolver
from ninja import NinjaAPI, Swagger
from ninja.errors import ValidationError, ValidationErrorContext

from copilot.web.api.auth import BearerToken, SessionCsrf
from copilot.web.api.body import JsonParser
from copilot.web.api.errors import detail_response, install_handlers
from copilot.web.api.jobs import router as jobs_router

API_VERSION = "1.0.0"
DESCRIPTION = """\
The Copilot portal's jobs, for scripts: submit a job, follow it, cancel or retry it.

Authenticate with `Authorization: Bearer <token>` (`manage.py create_api_token`), or with the
portal's session cookie plus the `X-CSRFToken` header for POSTs. Errors: `400 {"errors":
{field: message}}` for a bad body or query parameter, `{"detail": message}` for the others.
"""


def _kept_for_messages(error: dict[str, Any]) -> dict[str, Any]:
    """A pydantic error with its ``input`` reduced to what a message may say of it: a text's
    length (as a placeholder of that length); nothing of the input is ever answered."""
    given = error.pop("input", None)
    if isinstance(given, str):
        error["input"] = "x" * len(given.strip())
    ctx = error.get("ctx")
    if ctx and isinstance(ctx.get("error"), Exception):
        error["ctx"] = {**ctx, "error": str(ctx["error"])}
    return error


class PortalAPI(NinjaAPI):
    """NinjaAPI with the portal's errors: field errors keep what their messages need, and a
    method a path does not take is a JSON 405."""

    def validation_error_from_error_contexts(
        self, error_contexts: list[ValidationErrorContext]
    ) -> ValidationError:
        errors: list[dict[str, Any]] = []
        for context in error_contexts:
            model = context.model
            reverse_map = model.__ninja_flatten_map_reverse__
            for error in context.pydantic_validation_error.errors(include_url=False):
                loc = (model.__ninja_param_source__, *reverse_map.get(error["loc"], error["loc"]))
                errors.append(_kept_for_messages({**error, "loc": loc}))
        return ValidationError(errors)

    @property
    def urls(self) -> tuple[list[URLResolver | URLPattern], str, str]:
        patterns, app_name, namespace = super().urls
        return [_json_not_allowed(p) for p in patterns], app_name, namespace


def _json_not_allowed(pattern: URLPattern | URLResolver) -> URLPattern | URLResolver:
    """The same route, answering django-ninja's plain-text 405 as ``{"detail": …}``."""
    if not isinstance(pattern, URLPattern):
        return pattern
    view: Callable[..., Any] = pattern.callback

    @functools.wraps(view)  # keeps csrf_exempt: django-ninja's auth checks CSRF itself
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = ", ".join(sorted(m.strip() for m in response["Allow"].split(",")))
            return detail_response(
                api,
                request,
                status=405,
                detail=f"Method {request.method} not allowed.",
                Allow=allowed,
            )
        return response

    return URLPattern(pattern.pattern, wrapped, pattern.default_args, pattern.name)


class PortalSwagger(Swagger):
    """Swagger UI from django-ninja's static files; its stylesheet draws some icons from
    ``data:`` URLs, which this page's Content-Security-Policy (only this page's) allows."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        response = super().render_page(request, api, **kwargs)

        @csp_update({"img-src": ["data:"]})
        def page(request: HttpRequest) -> HttpResponse:
            return response

        return cast("HttpResponse", page(request))


api = PortalAPI(
    title="Copilot portal API",
    version=API_VERSION,
    description=DESCRIPTION,
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
    docs=PortalSwagger(),
    auth=[BearerToken(), SessionCsrf()],
    parser=JsonParser(),
)
install_handlers(api)
api.add_router("/jobs/", jobs_router)
