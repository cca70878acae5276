"""The API's OpenAPI schema: valid OpenAPI 3, and true to what the API answers.

Every operation documents each status it can give, with the error shape and headers of each;
the create's 201 links to the operations on the new job (for stateful testing); and a job as
the API answers it validates against the schema that documents it.
"""

from __future__ import annotations

import jsonschema
import pytest
from django.test import Client
from openapi_spec_validator import validate

from copilot.jobs import services, transitions
from copilot.jobs.models import GenerationJob
from copilot.jobs.presenters import job_as_dict

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("post", "/api/jobs/"): ("createJob", "201", {"400", "401", "403", "413", "415", "429"}),
    ("get", "/api/jobs/"): ("listJobs", "200", {"400", "401"}),
    ("get", "/api/jobs/{job_id}/"): ("getJob", "200", {"401", "404"}),
    ("post", "/api/jobs/{job_id}/cancel/"): (
        "cancelJob", "200", {"401", "403", "404", "409", "413", "415"},
    ),
    ("post", "/api/jobs/{job_id}/retry/"): (
        "retryJob", "200", {"401", "403", "404", "409", "413", "415", "429"},
    ),
}  # fmt: skip
REF = "#/components/schemas/"


@pytest.fixture(scope="module")
def schema() -> dict:
    response = Client().get("/api/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict) -> dict[tuple[str, str], dict]:
    return {
        (method, path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }


def response_schema(schema: dict, response: dict) -> dict:
    return response["content"]["application/json"]["schema"]


def test_the_schema_is_valid_openapi(schema):
    validate(schema)  # raises on any error
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Copilot portal API"


def test_every_operation_documents_exactly_the_statuses_it_gives(schema):
    found = operations(schema)
    assert set(found) == set(OPERATIONS)
    for key, (operation_id, ok, errors) in OPERATIONS.items():
        operation = found[key]
        assert operation["operationId"] == operation_id
        assert set(operation["responses"]) == {ok} | errors, key
        for status in errors:
            shape = "FieldErrors" if status == "400" else "Detail"
            documented = response_schema(schema, operation["responses"][status])
            assert documented == {"$ref": REF + shape}, (key, status)
        answer = response_schema(schema, operation["responses"][ok])
        assert answer == {"$ref": REF + ("JobPage" if operation_id == "listJobs" else "JobOut")}


def test_error_headers_are_documented(schema):
    for key, operation in operations(schema).items():
        responses = operation["responses"]
        assert "WWW-Authenticate" in responses["401"]["headers"], key
        if "429" in responses:
            retry_after = responses["429"]["headers"]["Retry-After"]
            assert retry_after["schema"]["type"] == "integer", key
        if "415" in responses:
            assert "Accept-Post" in responses["415"]["headers"], key


def test_the_error_shapes(schema):
    components = schema["components"]["schemas"]
    assert components["Detail"]["required"] == ["detail"]
    errors = components["FieldErrors"]["properties"]["errors"]
    assert errors["type"] == "object" and errors["additionalProperties"] == {"type": "string"}


def test_created_jobs_link_to_the_operations_on_them(schema):
    created = operations(schema)[("post", "/api/jobs/")]["responses"]["201"]
    assert created["links"] == {
        name: {"operationId": operation_id, "parameters": {"job_id": "$response.body#/id"}}
        for name, operation_id in [
            ("GetJob", "getJob"),
            ("CancelJob", "cancelJob"),
            ("RetryJob", "retryJob"),
        ]
    }
    ids = {operation["operationId"] for operation in operations(schema).values()}
    assert {"getJob", "cancelJob", "retryJob"} <= ids


def test_every_operation_takes_a_token_or_the_session(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerToken"] == {**schemes["BearerToken"], "type": "http", "scheme": "bearer"}
    assert schemes["SessionCsrf"]["in"] == "cookie"
    assert schemes["SessionCsrf"]["name"] == "sessionid"
    for key, operation in operations(schema).items():
        assert operation["security"] == [{"BearerToken": []}, {"SessionCsrf": []}], key


def test_the_create_body_is_one_schema_per_kind(schema):
    body = operations(schema)[("post", "/api/jobs/")]["requestBody"]
    assert body["required"] is True
    union = body["content"]["application/json"]["schema"]
    kinds = {
        "decompose": "DecomposeRequest",
        "generate": "GenerateRequest",
        "update": "UpdateRequest",
        "customize": "CustomizeRequest",
    }
    assert union["discriminator"] == {
        "propertyName": "kind",
        "mapping": {kind: REF + name for kind, name in kinds.items()},
    }
    assert sorted(item["$ref"] for item in union["oneOf"]) == sorted(
        REF + name for name in kinds.values()
    )


def test_the_job_ids_and_the_list_parameters(schema):
    found = operations(schema)
    (job_id,) = found[("get", "/api/jobs/{job_id}/")]["parameters"]
    assert (job_id["in"], job_id["required"], job_id["schema"]["format"]) == ("path", True, "uuid")
    parameters = {p["name"]: p for p in found[("get", "/api/jobs/")]["parameters"]}
    assert set(parameters) == {"status", "kind", "cursor", "page"}
    page = parameters["page"]["schema"]
    assert (page["type"], page["minimum"], page["maximum"]) == ("integer", 1, 1_000_000)
    cursor = parameters["cursor"]
    assert not cursor.get("required") and "next" in cursor["description"]


def validator(schema: dict, name: str) -> jsonschema.Draft202012Validator:
    document = {"$ref": REF + name, "components": schema["components"]}
    return jsonschema.Draft202012Validator(
        document, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_jobs_in_every_state_match_the_schema(schema, user):
    """Nullable fields are documented as nullable: a queued job has most of them null."""
    queued = services.job_submit(user=user, kind="decompose", payload={"description": "goal"})
    failed = services.job_submit(user=user, kind="decompose", payload={"description": "goal"})
    failed = transitions.job_mark_submitting(job=failed).job
    failed = transitions.job_fail(job=failed, error_type="timeout", error_message="slow").job
    job_schema = validator(schema, "JobOut")
    for job in (queued, failed):
        job_schema.validate(job_as_dict(job))
    properties = schema["components"]["schemas"]["JobOut"]["properties"]
    assert set(properties) == set(job_as_dict(queued))
    assert set(schema["components"]["schemas"]["JobOut"]["required"]) == set(properties)
    assert job_as_dict(queued)["started_at"] is None  # so the schema's null is exercised
    api = Client()
    api.force_login(user)
    validator(schema, "JobPage").validate(api.get("/api/jobs/").json())
    assert GenerationJob.objects.count() == 2
