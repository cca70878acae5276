"""Django settings for the copilot portal.

Everything configurable is read from the environment by :mod:`copilot.config` (see the
README's settings table). This module only arranges those values the way Django expects.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from csp import constants as _csp

from copilot import config as _config

BASE_DIR = Path(__file__).resolve().parent.parent

# A .env beside manage.py fills in variables the real environment does not set.
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

CONFIG = _config.load(os.environ, base_dir=BASE_DIR)

DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.secret_key
ALLOWED_HOSTS = CONFIG.allowed_hosts

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves the ASGI app
    "copilot.jobs",  # app label "copilot": jobs, their events, API tokens
    "copilot.ops",  # admin and commands; before channels: its runworker runs the job runner
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",  # login throttling (django-axes): see AXES_* below
    "channels",
    "ninja",  # the JSON API's /api/docs: django-ninja's template and Swagger UI's static files
]

MIDDLEWARE = [
    # First: a database restart or failover answers 503 with Retry-After, not a 500.
    "copilot.web.db_unavailable.DatabaseUnavailableMiddleware",
    "copilot.logs.RequestContextMiddleware",  # X-Request-ID, the ids on log lines
    "django.middleware.security.SecurityMiddleware",
    "copilot.web.csp.PageNonceCSPMiddleware",  # Content-Security-Policy, see below
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: a refused login becomes the lockout page
]

ROOT_URLCONF = "copilot.urls"
ASGI_APPLICATION = "copilot.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": CONFIG.database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CHANNEL_LAYERS = {"default": _config.channel_layer_config(redis_url=CONFIG.redis_url)}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes), on the portal's and the admin's login forms: after
# COPILOT_LOGIN_FAILURE_LIMIT failures for one username, that username's logins are refused,
# even with the right password, until COPILOT_LOGIN_COOLOFF_MINUTES after its last counted
# failure (or `manage.py axes_reset_username NAME`). By username only, never by IP: behind
# the balancer every client has the proxy's address, so an IP lock would lock out everyone.
# AxesBackend (a ModelBackend) checks first and authenticates nobody; ModelBackend logs in.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = CONFIG.login_failure_limit
AXES_COOLOFF_TIME = timedelta(minutes=CONFIG.login_cooloff_minutes)
AXES_LOCKOUT_PARAMETERS = ["username"]
AXES_RESET_ON_SUCCESS = True  # a successful login starts the count again
# Tries while locked out are refused but not counted, so they do not push the end further.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "copilot.web.login_throttle.lockout_response"  # the login page, 429
AXES_ENABLE_ADMIN = False  # copilot.ops.admin registers its own, for every staff member
# axes.W006 asks for ip_address among the lockout parameters; see above for why not.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the JSON API's session clients read it to send X-CSRFToken
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Behind a TLS proxy (docs/deploy.md, "Production checklist"). SECURE_PROXY_SSL_HEADER is
# ("HTTP_X_FORWARDED_PROTO", "https") for SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto, or None.
CSRF_TRUSTED_ORIGINS = CONFIG.csrf_trusted_origins
SECURE_PROXY_SSL_HEADER = CONFIG.secure_proxy_ssl_header
SECURE_SSL_REDIRECT = CONFIG.secure_ssl_redirect
SECURE_HSTS_SECONDS = CONFIG.secure_hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = CONFIG.secure_hsts_include_subdomains
SECURE_HSTS_PRELOAD = CONFIG.secure_hsts_preload
SESSION_COOKIE_SECURE = CONFIG.session_cookie_secure  # default: on when DEBUG is off
CSRF_COOKIE_SECURE = CONFIG.csrf_cookie_secure  # default: on when DEBUG is off

# The Content-Security-Policy of every response (django-csp; nonce: copilot.web.csp). Scripts and
# styles come from this origin, inline ones only with the response's nonce; no style=""
# attributes, eval, plugins, framing, or forms and <base> pointing elsewhere.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [_csp.SELF],
        "script-src": [_csp.SELF, _csp.NONCE],
        "style-src": [_csp.SELF, _csp.NONCE],
        "img-src": [_csp.SELF],
        "connect-src": [_csp.SELF],  # the job page's event stream is same-origin
        "object-src": [_csp.NONE],
        "base-uri": [_csp.SELF],
        "form-action": [_csp.SELF],
        "frame-ancestors": [_csp.NONE],
    },
}

# The Agent Generator and the job runner (see copilot.config for what each one does).
AGENT_GENERATOR_URL = CONFIG.agent_generator_url
AGENT_GENERATOR_REQUEST_TIMEOUT = CONFIG.agent_generator_request_timeout
AGENT_GENERATOR_POLL_INTERVAL = CONFIG.agent_generator_poll_interval
AGENT_GENERATOR_POLL_MAX_INTERVAL = CONFIG.agent_generator_poll_max_interval
AGENT_GENERATOR_POLL_BUDGET = CONFIG.agent_generator_poll_budget
AGENT_GENERATOR_MAX_CONSECUTIVE_ERRORS = CONFIG.agent_generator_max_consecutive_errors
# The embedded reference service's job file (a Path), or None: its jobs in memory.
COPILOT_EMBEDDED_AGENT_GENERATOR_STORE = CONFIG.embedded_agent_generator_store
COPILOT_LEASE_SECONDS = CONFIG.lease_seconds
COPILOT_RUNNER_DEAD_SECONDS = CONFIG.runner_dead_seconds
COPILOT_RUNNER_CONCURRENCY = CONFIG.runner_concurrency
COPILOT_RUNNER_IN_PROCESS = CONFIG.runner_in_process
COPILOT_MAX_ACTIVE_JOBS_PER_USER = CONFIG.max_active_jobs_per_user
COPILOT_HEARTBEAT_SECONDS = CONFIG.heartbeat_seconds
COPILOT_STREAM_MAX_SECONDS = CONFIG.stream_max_seconds
COPILOT_MAX_STREAMS_PER_USER = CONFIG.max_streams_per_user

# GET /metrics (Prometheus) answers only `Authorization: Bearer <METRICS_TOKEN>`; "" turns it off.
METRICS_TOKEN = CONFIG.metrics_token

# Job-end emails (copilot.jobs.notify): Django's mail settings from EMAIL_URL (the console by
# default), the sender, and the base of the links to jobs ("" with DEBUG off and unset: none).
EMAIL_BACKEND = CONFIG.email["EMAIL_BACKEND"]
EMAIL_HOST = CONFIG.email["EMAIL_HOST"]
EMAIL_PORT = CONFIG.email["EMAIL_PORT"]
EMAIL_HOST_USER = CONFIG.email["EMAIL_HOST_USER"]
EMAIL_HOST_PASSWORD = CONFIG.email["EMAIL_HOST_PASSWORD"]
EMAIL_USE_TLS = CONFIG.email["EMAIL_USE_TLS"]
EMAIL_USE_SSL = CONFIG.email["EMAIL_USE_SSL"]
EMAIL_TIMEOUT = CONFIG.email["EMAIL_TIMEOUT"]
EMAIL_FILE_PATH = CONFIG.email["EMAIL_FILE_PATH"]
DEFAULT_FROM_EMAIL = CONFIG.default_from_email
PORTAL_BASE_URL = CONFIG.portal_base_url

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "copilot.logs.JsonFormatter"},  # LOG_FORMAT=json: one object a line
    },
    "filters": {"once_a_minute": {"()": "copilot.logs.OncePer", "seconds": 60}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if CONFIG.log_format == "json" else "plain",
        },
        # psycopg's pool warns at each failed connection attempt: one line a minute of it.
        "console_once_a_minute": {
            "class": "logging.StreamHandler",
            "formatter": "json" if CONFIG.log_format == "json" else "plain",
            "filters": ["once_a_minute"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "copilot": {"level": CONFIG.log_level},
        "agent_generator": {"level": CONFIG.log_level},
        "psycopg.pool": {"handlers": ["console_once_a_minute"], "propagate": False},
    },
}
