"""EMAIL_URL, DEFAULT_FROM_EMAIL and PORTAL_BASE_URL: read, checked, and warned about by
``check --deploy`` when a deployment leaves them out."""

from __future__ import annotations

import pytest

from copilot.config import ConfigError, load
from copilot.ops.checks import mail_settings_check

SECRET = {"SECRET_KEY": "k" * 50, "AGENT_GENERATOR_URL": "https://generator.internal"}


def test_defaults_print_mails_and_link_to_make_run(tmp_path):
    config = load({"DEBUG": "true"}, base_dir=tmp_path)
    assert config.email["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    assert config.default_from_email == "Agent Copilot <copilot@localhost>"
    assert config.portal_base_url == "http://127.0.0.1:8000"


def test_with_debug_off_and_no_base_url_emails_carry_no_link(tmp_path):
    assert load(SECRET, base_dir=tmp_path).portal_base_url == ""


def test_an_smtp_url_sets_django_s_mail_settings(tmp_path):
    config = load(
        {
            **SECRET,
            "EMAIL_URL": "smtp+tls://portal%40example.com:p$ss@smtp.example.com:587?timeout=5",
            "DEFAULT_FROM_EMAIL": "Agent Copilot <portal@example.com>",
            "PORTAL_BASE_URL": "https://portal.example.com/copilot/",
        },
        base_dir=tmp_path,
    )
    assert config.email == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "smtp.example.com",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "portal@example.com",
        "EMAIL_HOST_PASSWORD": "p$ss",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
        "EMAIL_TIMEOUT": 5,
        "EMAIL_FILE_PATH": None,
    }
    assert config.default_from_email == "Agent Copilot <portal@example.com>"
    assert config.portal_base_url == "https://portal.example.com/copilot"


@pytest.mark.parametrize(
    ("url", "folder"),
    [("filemail:////var/mail/portal", "/var/mail/portal"), ("filemail:///var/mail", "var/mail")],
)
def test_a_file_backend_writes_to_a_folder(tmp_path, url, folder):
    email = load({"DEBUG": "true", "EMAIL_URL": url}, base_dir=tmp_path).email
    assert email["EMAIL_BACKEND"] == "django.core.mail.backends.filebased.EmailBackend"
    assert email["EMAIL_FILE_PATH"] == str(tmp_path / folder)
    assert email["EMAIL_TIMEOUT"] == 10


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMAIL_URL": "http://user:secret@mail"}, "EMAIL_URL has an unsupported scheme 'http'"),
        ({"EMAIL_URL": "smtp://"}, "EMAIL_URL names no mail server"),
        ({"EMAIL_URL": "smtp://u:secret@host:port"}, "EMAIL_URL is not a valid URL"),
        ({"EMAIL_URL": "filemail://"}, "EMAIL_URL names no folder"),
        ({"EMAIL_URL": "filemail://var/mail"}, "EMAIL_URL names no folder"),
        ({"DEFAULT_FROM_EMAIL": "portal"}, "DEFAULT_FROM_EMAIL='portal' is not an email address"),
        ({"PORTAL_BASE_URL": "portal.example.com"}, "PORTAL_BASE_URL='portal.example.com' is not"),
        ({"PORTAL_BASE_URL": "https://x.example.com/?a=1"}, "PORTAL_BASE_URL="),
        ({"PORTAL_BASE_URL": "javascript:alert(1)"}, "PORTAL_BASE_URL="),
    ],
)
def test_bad_mail_settings_stop_start_up_with_one_line(tmp_path, env, message):
    with pytest.raises(ConfigError) as error:
        load({"DEBUG": "true", **env}, base_dir=tmp_path)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
    assert "secret" not in str(error.value)  # a password in EMAIL_URL is never shown


def ids(warnings) -> list[str]:
    return [w.id for w in warnings]


def test_check_deploy_warns_about_each_mail_setting_left_out(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "Agent Copilot <copilot@localhost>"
    settings.PORTAL_BASE_URL = ""
    assert ids(mail_settings_check()) == ["copilot.W001", "copilot.W002", "copilot.W003"]


def test_check_deploy_is_quiet_with_the_mail_settings_given(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "portal@example.com"
    settings.PORTAL_BASE_URL = "https://portal.example.com"
    assert mail_settings_check() == []
