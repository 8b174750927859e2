"""The OpenAPI document is one a client generator can rely on: short stable operation ids, and every error
documented as the application/problem+json (Problem schema) the service really sends, where it can send it."""

import re
from datetime import date

import pytest

from app.core.config import Settings
from app.core.strict import DAY_PATTERN, NO_NUL_PATTERN
from app.main import create_app
from tests.factories import add_products, customer_body

SPEC = create_app(Settings(environment="test")).openapi()
OPERATIONS = [
    (path, method, operation) for path, operations in SPEC["paths"].items() for method, operation in operations.items()
]
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def test_operation_ids_are_unique_short_snake_case_and_stable():
    ids = [operation["operationId"] for _, _, operation in OPERATIONS]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", i) and len(i) <= 40 for i in ids), ids
    by_route = {f"{method.upper()} {path}": operation["operationId"] for path, method, operation in OPERATIONS}
    # renaming one of these breaks every generated client: they are the route functions' names, kept
    assert by_route["GET /v1/customers/{customer_id}/tiers"] == "get_customer_tiers"
    assert by_route["PUT /v1/customers/{customer_id}"] == "upsert_customer"
    assert by_route["GET /v1/customers/{customer_id}/recommendations"] == "get_recommendations"
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
    for path, method, operation in OPERATIONS:  # nothing there to validate, no 422 documented
        if not operation.get("parameters") and "requestBody" not in operation:
            assert "422" not in operation["responses"], f"{method.upper()} {path}"


@pytest.mark.parametrize(
    "body, pointer",
    [
        ('{"segment": "retail", "onboarded_at": ', "/onboarded_at"),
        ('{"segment": "retail", "attributes": {"a": [1, 2,, 3]}}', "/attributes/a/2"),
        ('{"segment": "retail",}', ""),
        ("not json at all", ""),
    ],
)
async def test_malformed_json_points_at_the_field_being_read(client, as_role, body, pointer):
    response = await client.put(
        "/v1/customers/MALFORMED",
        content=body.encode(),
        headers={**as_role("integration"), "Content-Type": "application/json"},
    )
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    error = response.json()["errors"][0]
    assert error["type"] == "json_invalid" and error["pointer"] == pointer, error
    assert error["detail"].startswith("malformed JSON:") and "line 1, column" in error["detail"]


async def test_a_body_that_is_not_utf8_text_is_the_documented_400(client, as_role):
    response = await client.put(
        "/v1/customers/NOT-UTF8",
        content=b'{"segment": "\xff"}',
        headers={**as_role("integration"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and response.headers["content-type"] == "application/problem+json"
    assert "400" in SPEC["paths"]["/v1/customers/{customer_id}"]["put"]["responses"]
    good = await client.put("/v1/customers/UTF8", json=customer_body(), headers=as_role("integration"))
    assert good.status_code == 201


def _walk(node, path=""):
    """Every (path, schema dict) in a JSON document."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}/{i}")


def test_summaries_are_written_for_people_and_tags_are_described():
    for path, method, operation in OPERATIONS:
        derived = operation["operationId"].replace("_", " ").title()
        assert operation.get("summary") and operation["summary"] != derived, f"{method.upper()} {path}"
    described = {tag["name"] for tag in SPEC["tags"] if tag.get("description")}
    assert {tag for _, _, operation in OPERATIONS for tag in operation["tags"]} <= described


def test_path_parameters_carry_examples():
    for path, _method, operation in OPERATIONS:
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"].get("examples") or parameter.get("example"), f"{path} {parameter['name']}"


def test_enums_are_named_components_each_defined_once():
    schemas = SPEC["components"]["schemas"]
    inline = [
        where
        for where, node in _walk(SPEC)
        if "enum" in node and not (where.startswith("/components/schemas/") and where.count("/") == 3)
    ]
    assert inline == [], inline
    enums = [tuple(schema["enum"]) for schema in schemas.values() if "enum" in schema]
    assert len(enums) == len(set(enums)), "two components list the same values"
    assert not [name for name in schemas if "__" in name or name.endswith(("-Input", "-Output"))]
    assert "SimulationResult" in schemas and "TierDistributionEntry" in schemas


def test_money_is_a_decimal_string_with_a_pattern_in_requests_and_responses():
    schemas = SPEC["components"]["schemas"]
    money = {
        ("HoldingIn", "balance"),
        ("HoldingRead", "balance"),
        ("TransactionEvent", "amount"),
        ("ProductCreate", "min_amount"),
        ("ProductRead", "min_amount"),
        ("CustomerMetrics", "aum"),
        ("CustomerMetrics", "aum_avg_3m"),
        ("TierDistribution", "aum"),
        ("TierDistributionEntry", "aum"),
    }
    for model, field in money:
        schema = schemas[model]["properties"][field]
        assert schema["type"] == "string" and r"(\.[0-9]{1,2})?" in schema["pattern"], (model, field)
    number_or_string = [
        where
        for where, node in _walk(SPEC)
        if {"type": "number"} in node.get("anyOf", [])
        and any(
            s.get("type") == "string" and "pattern" in s and s["pattern"] not in (DAY_PATTERN, NO_NUL_PATTERN)
            for s in node["anyOf"]
        )
    ]  # money is one type; a rule's value ordered by a number or a date is not money
    assert number_or_string == [], number_or_string


def test_explanations_and_reasons_are_typed():
    schemas = SPEC["components"]["schemas"]
    assert schemas["TierExplanation"]["properties"]["conditions"]["items"] == {
        "$ref": "#/components/schemas/ConditionResult"
    }
    reasons = schemas["RecommendationRead"]["properties"]["reasons"]["items"]
    assert reasons["discriminator"]["propertyName"] == "code" and len(reasons["oneOf"]) == 8
    assert schemas["CareEntry"]["properties"]["date"]["format"] == "date"


async def test_money_sent_as_a_number_is_refused_and_returned_as_a_string(client, as_role, session):
    await add_products(session)
    headers = as_role("integration")
    assert (await client.put("/v1/customers/MONEY-1", json=customer_body(), headers=headers)).status_code == 201
    holding = {"product_code": "current_account", "balance": 8450.2, "as_of": date.today().isoformat()}
    refused = await client.put("/v1/customers/MONEY-1/holdings", json={"holdings": [holding]}, headers=headers)
    assert refused.status_code == 422 and refused.json()["errors"][0]["pointer"] == "/holdings/0/balance"
    stored = await client.put(
        "/v1/customers/MONEY-1/holdings", headers=headers, json={"holdings": [{**holding, "balance": "8450.2"}]}
    )
    assert stored.status_code == 200, stored.text
    assert stored.json()["holdings"][0]["balance"] == "8450.20"
    customer = (await client.get("/v1/customers/MONEY-1", headers=headers)).json()
    assert customer["metrics"]["deposit_balance"] == "8450.20"


def test_published_constraints_are_the_enforced_ones():
    schemas = SPEC["components"]["schemas"]
    update = schemas["ProductUpdate"]["properties"]
    assert "anyOf" not in update["name"] and "anyOf" in update["active_to"]  # only the clearable fields take null
    assert schemas["ProductCreate"]["properties"]["channels"]["uniqueItems"] is True
    assert schemas["CustomerUpsert"]["dependentRequired"] == {"risk_level": ["risk_assessed_at"]}
    shapes = {shape["title"]: shape for shape in schemas["Comparison"]["oneOf"]}
    assert [branch["minItems"] for branch in shapes["BetweenComparison"]["properties"]["value"]["anyOf"]] == [2, 2]
    # each operator's values as the compiler takes them: order by numbers or dates, sets of strings, lists of one type
    assert shapes["OrderComparison"]["properties"]["value"]["anyOf"][0] == {"type": "number"}
    assert shapes["ContainsComparison"]["properties"]["value"]["type"] == "string"
    assert [b["items"].get("type") for b in shapes["ListComparison"]["properties"]["value"]["anyOf"]] == [
        "number",
        "string",
    ]
    assert shapes["IsNullComparison"]["properties"]["value"] == {"title": "Value", "type": "boolean"}


async def test_a_zero_amount_and_a_null_product_name_are_refused_as_published(client, as_role, session):
    await add_products(session)
    patched = await client.patch("/v1/products/current_account", json={"name": None}, headers=as_role("admin"))
    assert patched.status_code == 422 and patched.json()["errors"][0]["pointer"] == "/name"
    assert "omit the field" in patched.json()["errors"][0]["detail"]
    event = {
        "type": "transaction",
        "event_id": "zero-1",
        "customer_id": "NOBODY",
        "amount": "0.00",
        "direction": "debit",
        "channel": "card",
        "occurred_at": "2026-01-01T00:00:00Z",
    }
    refused = await client.post("/v1/events", json={"events": [event]}, headers=as_role("integration"))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["pointer"].endswith("/amount")
