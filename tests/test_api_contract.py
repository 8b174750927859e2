"""The OpenAPI document is one a client generator can rely on: short stable operation ids, and every error
documented as the application/problem+json (Problem schema) the service really sends, where it can send it."""

import re

import pytest

from app.core.config import Settings
from app.main import create_app
from tests.factories import customer_body

SPEC = create_app(Settings(environment="test")).openapi()
OPERATIONS = [(path, method, operation) for path, operations in SPEC["paths"].items()
              for method, operation in operations.items()]
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def test_operation_ids_are_unique_short_snake_case_and_stable():
    ids = [operation["operationId"] for _, _, operation in OPERATIONS]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", i) and len(i) <= 40 for i in ids), ids
    by_route = {f"{method.upper()} {path}": operation["operationId"] for path, method, operation in OPERATIONS}
    # renaming one of these breaks every generated client: they are the route functions' names, kept
    assert by_route["GET /v1/customers/{external_id}/tiers"] == "get_customer_tiers"
    assert by_route["PUT /v1/customers/{external_id}"] == "upsert_customer"
    assert by_route["GET /v1/customers/{external_id}/recommendations"] == "get_recommendations"
    assert by_route["POST /v1/feedback/events"] == "ingest_feedback_events"


def test_every_error_response_is_problem_json_with_the_problem_schema():
    for path, method, operation in OPERATIONS:
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert response["content"] == PROBLEM, f"{method.upper()} {path} {status}"
    assert "HTTPValidationError" not in SPEC["components"]["schemas"]
    assert {"type", "title", "status", "detail"} <= set(SPEC["components"]["schemas"]["Problem"]["required"])


def test_errors_are_documented_where_they_can_happen():
    for path, method, operation in OPERATIONS:
        statuses, name = set(operation["responses"]), f"{method.upper()} {path}"
        if operation.get("security"):
            assert {"401", "403", "429"} <= statuses, name
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            assert {"400", "413", "422"} <= statuses, name
        if operation.get("parameters"):
            assert "422" in statuses, name
        if path.startswith("/v1/"):
            assert "503" in statuses, name
    for bulk in ("/v1/customers/import", "/v1/events", "/v1/feedback/events"):
        assert "413" in SPEC["paths"][bulk]["post"]["responses"]
    assert "422" not in SPEC["paths"]["/v1/attributes"]["get"]["responses"]  # nothing there to validate


@pytest.mark.parametrize("body, pointer", [
    ('{"segment": "retail", "onboarded_at": ', "/onboarded_at"),
    ('{"segment": "retail", "attributes": {"a": [1, 2,, 3]}}', "/attributes/a/2"),
    ('{"segment": "retail",}', ""),
    ("not json at all", ""),
])
async def test_malformed_json_points_at_the_field_being_read(client, as_role, body, pointer):
    response = await client.put("/v1/customers/MALFORMED", content=body.encode(),
                                headers={**as_role("integration"), "Content-Type": "application/json"})
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    error = response.json()["errors"][0]
    assert error["type"] == "json_invalid" and error["pointer"] == pointer, error
    assert error["detail"].startswith("malformed JSON:") and "line 1, column" in error["detail"]


async def test_a_body_that_is_not_utf8_text_is_the_documented_400(client, as_role):
    response = await client.put("/v1/customers/NOT-UTF8", content=b'{"segment": "\xff"}',
                                headers={**as_role("integration"), "Content-Type": "application/json"})
    assert response.status_code == 400 and response.headers["content-type"] == "application/problem+json"
    assert "400" in SPEC["paths"]["/v1/customers/{external_id}"]["put"]["responses"]
    good = await client.put("/v1/customers/UTF8", json=customer_body(), headers=as_role("integration"))
    assert good.status_code == 201
