"""Admins review job history in the Django admin; others are kept out."""

from __future__ import annotations

import pytest
from django.urls import reverse

from copilot.jobs import services, transitions

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(user):
    job = services.job_submit(
        user=user,
        kind="decompose",
        payload={"description": "Summarise <script>alert(1)</script> news daily"},
    )
    submitting = transitions.job_mark_submitting(job=job).job
    transitions.job_fail(job=submitting, error_type="rate_limit", error_message="429")
    return job


def test_list_renders_for_staff_with_filters_and_search(client, staff_user, job):
    client.force_login(staff_user)
    url = reverse("admin:copilot_generationjob_changelist")
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert str(job.id) in body and "rate_limit" in body and "alice" in body
    assert client.get(url, {"status__exact": "failed"}).context["cl"].result_count == 1
    assert client.get(url, {"status__exact": "running"}).context["cl"].result_count == 0
    assert client.get(url, {"q": "news daily"}).context["cl"].result_count == 1
    assert client.get(url, {"q": "nothing-like-this"}).context["cl"].result_count == 0


def test_detail_is_read_only_with_escaped_json_and_events(client, staff_user, job):
    client.force_login(staff_user)
    page = client.get(reverse("admin:copilot_generationjob_change", args=[job.id]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert(1)</script>" not in body
    assert 'name="_save"' not in body  # nothing to save: machine-written rows are read-only
    # The event log is inline, in order, each event's data as escaped JSON.
    quoted = [f"&quot;status&quot;: &quot;{s}&quot;" for s in ("queued", "submitting", "failed")]
    positions = [body.index(q) for q in quoted]
    assert positions == sorted(positions)
    assert body.count("<pre") >= 4  # request, and one per event


def test_non_staff_are_refused(client, user, job):
    client.force_login(user)
    for url in (
        reverse("admin:copilot_generationjob_changelist"),
        reverse("admin:copilot_generationjob_change", args=[job.id]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


def test_retry_action_goes_through_the_service(client, staff_user, job):
    client.force_login(staff_user)
    response = client.post(
        reverse("admin:copilot_generationjob_changelist"),
        {"action": "retry_jobs", "_selected_action": [str(job.id)]},
        follow=True,
    )
    assert "Retried 1 job(s)." in response.content.decode()
    job.refresh_from_db()
    assert (job.status, job.attempt) == ("queued", 2)
    response = client.post(
        reverse("admin:copilot_generationjob_changelist"),
        {"action": "retry_jobs", "_selected_action": [str(job.id)]},
        follow=True,
    )
    assert "Not retried" in response.content.decode()


def test_job_page_offers_retry_after_failure_and_cancel_while_active(client, staff_user, job, user):
    client.force_login(staff_user)
    page = reverse("admin:copilot_generationjob_change", args=[job.id])
    body = client.get(page).content.decode()
    assert reverse("admin:copilot_job_retry", args=[job.id]) in body
    assert reverse("admin:copilot_job_cancel", args=[job.id]) not in body
    assert client.get(reverse("admin:copilot_job_retry", args=[job.id])).status_code == 405
    response = client.post(reverse("admin:copilot_job_retry", args=[job.id]), follow=True)
    assert "Retried 1 job(s)." in response.content.decode()
    job.refresh_from_db()
    assert (job.status, job.attempt) == ("queued", 2)
    body = client.get(page).content.decode()
    assert reverse("admin:copilot_job_cancel", args=[job.id]) in body
    response = client.post(reverse("admin:copilot_job_cancel", args=[job.id]), follow=True)
    assert "Cancelled 1 job(s)." in response.content.decode()
    job.refresh_from_db()
    assert job.status == "cancelled"
    # Cancelling again is refused, and says why.
    response = client.post(reverse("admin:copilot_job_cancel", args=[job.id]), follow=True)
    assert "Not cancelled" in response.content.decode()


def test_job_page_actions_refuse_non_staff(client, user, job):
    client.force_login(user)
    response = client.post(reverse("admin:copilot_job_retry", args=[job.id]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    job.refresh_from_db()
    assert job.attempt == 1


def test_api_tokens_are_listed_read_only_and_revoked_by_deleting(client, django_user_model, user):
    from copilot.jobs.tokens import api_token_create, user_for_key

    superuser = django_user_model.objects.create_superuser("root", password="root-pass-123")
    token, key = api_token_create(user=user, name="ci script")
    client.force_login(superuser)
    listing = client.get(reverse("admin:copilot_apitoken_changelist")).content.decode()
    assert "ci script" in listing and key not in listing and token.key_hash not in listing
    assert client.get(reverse("admin:copilot_apitoken_add")).status_code == 403
    client.post(
        reverse("admin:copilot_apitoken_changelist"),
        {"action": "delete_selected", "_selected_action": [token.pk], "post": "yes"},
    )
    assert user_for_key(key=key) is None
