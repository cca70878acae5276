"""The new-job form's "Email me when it's done": checked for a user with an address, stored on
the job as ``notify_email``."""

from __future__ import annotations

import re

import pytest

from copilot.jobs.models import GenerationJob

pytestmark = pytest.mark.django_db

GOAL = "Every morning at 8am, email me the top tech news"


@pytest.fixture
def carol(django_user_model):
    return django_user_model.objects.create_user(
        username="carol", email="carol@example.com", password="carol-pass-123"
    )


def checkbox(html: str) -> str:
    match = re.search(r'<input type="checkbox" name="notify_email"[^>]*>', html)
    assert match, html
    return match.group(0)


@pytest.mark.parametrize("kind", ["decompose", "generate", "update", "customize"])
def test_checked_by_default_for_a_user_with_an_address(client, carol, kind):
    client.force_login(carol)
    html = client.get("/jobs/new/", {"kind": kind}).content.decode()
    assert "checked" in checkbox(html) and "disabled" not in checkbox(html)
    assert "Email me when it&#x27;s done" in html
    assert "carol@example.com" in html


def test_off_and_disabled_for_a_user_without_one(client, user):
    client.force_login(user)
    html = client.get("/jobs/new/").content.decode()
    assert "checked" not in checkbox(html) and "disabled" in checkbox(html)
    assert "Your account has no email address" in html


@pytest.mark.parametrize(("posted", "stored"), [({"notify_email": "on"}, True), ({}, False)])
def test_the_choice_is_stored_on_the_job(client, carol, posted, stored):
    client.force_login(carol)
    response = client.post("/jobs/new/", {"kind": "decompose", "text": GOAL, **posted})
    assert response.status_code == 302
    assert GenerationJob.objects.get().notify_email is stored


def test_a_user_without_an_address_cannot_ask(client, user):
    client.force_login(user)
    client.post("/jobs/new/", {"kind": "decompose", "text": GOAL, "notify_email": "on"})
    assert GenerationJob.objects.get().notify_email is False
