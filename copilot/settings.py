"""Django settings for the copilot portal.

Everything configurable is read from the environment by :mod:`copilot.config` (see the
README's settings table). This module only arranges those values the way Django expects.
"""

import os
from pathlib import Path

import environ

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
    "channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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

# The Agent Generator and the job runner (see copilot.config for what each one does).
AGENT_GENERATOR_URL = CONFIG.agent_generator_url
AGENT_GENERATOR_REQUEST_TIMEOUT = CONFIG.agent_generator_request_timeout
AGENT_GENERATOR_POLL_INTERVAL = CONFIG.agent_generator_poll_interval
AGENT_GENERATOR_POLL_MAX_INTERVAL = CONFIG.agent_generator_poll_max_interval
AGENT_GENERATOR_POLL_BUDGET = CONFIG.agent_generator_poll_budget
AGENT_GENERATOR_MAX_CONSECUTIVE_ERRORS = CONFIG.agent_generator_max_consecutive_errors
COPILOT_LEASE_SECONDS = CONFIG.lease_seconds
COPILOT_RUNNER_CONCURRENCY = CONFIG.runner_concurrency
COPILOT_RUNNER_IN_PROCESS = CONFIG.runner_in_process
COPILOT_MAX_ACTIVE_JOBS_PER_USER = CONFIG.max_active_jobs_per_user
COPILOT_HEARTBEAT_SECONDS = CONFIG.heartbeat_seconds
COPILOT_STREAM_MAX_SECONDS = CONFIG.stream_max_seconds

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "copilot": {"level": CONFIG.log_level},
        "agent_generator": {"level": CONFIG.log_level},
    },
}
