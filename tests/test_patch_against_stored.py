"""One rule for every PATCH (app/core/patching.py, RFC 5789 2.2): a PATCH valid alone that makes with the stored
document one breaking a rule is a 409 problem+json naming the field; a PATCH that breaks the rule alone is a 422.
The spec documents the 409 on every PATCH that checks such a rule."""

import jsonschema_rs
import pytest

from app.core.config import Settings
from app.core.errors import InvalidInput
from app.core.patching import ConflictsWithStored, Patch, refusal
from app.main import create_app
from tests.benefits.helpers import add_benefit
from tests.factories import customer_body


class Stored:
    starts_at, ends_at = 1, 5


def test_the_fields_a_rule_reads_decide_422_or_409():
    patch = Patch.of(Stored(), {"ends_at": 0})
    assert patch["ends_at"] == 0 and patch["starts_at"] == 1  # sent over stored
    assert type(patch.refusal("/ends_at", "x", reads=("starts_at", "ends_at"))) is ConflictsWithStored
    both = Patch.of(Stored(), {"starts_at": 3, "ends_at": 2})
    assert type(both.refusal("/ends_at", "x", reads=("starts_at", "ends_at"))) is InvalidInput
    assert type(patch.refusal("/capacity", "x")) is ConflictsWithStored  # reads stored state only
    assert type(refusal(None, "/ends_at", "x", reads=("starts_at", "ends_at"))) is InvalidInput  # a create
    conflict = patch.refusal("/ends_at", "must be after starts_at", reads=("starts_at", "ends_at"))
    assert conflict.status == 409 and conflict.errors == [
        {"location": "body", "pointer": "/ends_at", "detail": "must be after starts_at"}
    ]


def _problem(response, status: int, pointer: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["pointer"] for e in response.json()["errors"]] == [pointer]


async def test_a_benefit_usage_limit_against_the_stored_period(client, as_role, wealth):
    admin = as_role("admin")
    await add_benefit(client, as_role, "lounge", "wealth")  # neither usage_limit nor usage_period
    alone = await client.patch("/v1/benefits/lounge", headers=admin, json={"usage_limit": 3})
    _problem(alone, 409, "/usage_period")
    window = {"valid_from": "2026-03-01T00:00:00Z"}
    assert (await client.patch("/v1/benefits/lounge", headers=admin, json=window)).status_code == 200
    early = await client.patch("/v1/benefits/lounge", headers=admin, json={"valid_to": "2026-02-01T00:00:00Z"})
    _problem(early, 409, "/valid_to")
    both = {"valid_from": "2026-03-01T00:00:00Z", "valid_to": "2026-02-01T00:00:00Z"}
    _problem(await client.patch("/v1/benefits/lounge", headers=admin, json=both), 422, "/valid_to")
    fine = await client.patch("/v1/benefits/lounge", headers=admin, json={"usage_limit": 3, "usage_period": "month"})
    assert fine.status_code == 200, fine.text


async def test_a_customer_risk_date_against_the_stored_level(client, as_role):
    integration = as_role("integration")
    created = await client.put("/v1/customers/PS1", json=customer_body(risk_level=3), headers=integration)
    assert created.status_code == 201, created.text
    cleared = await client.patch("/v1/customers/PS1", json={"risk_assessed_at": None}, headers=integration)
    _problem(cleared, 409, "/risk_assessed_at")
    none = {"risk_level": None, "risk_assessed_at": None}
    assert (await client.patch("/v1/customers/PS1", json=none, headers=integration)).status_code == 200
    level = await client.patch("/v1/customers/PS1", json={"risk_level": 2}, headers=integration)
    _problem(level, 409, "/risk_assessed_at")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/{customer_id}",
        "/v1/products/{product_code}",
        "/v1/benefits/{benefit_code}",
        "/v1/activities/{activity_key}",
        "/v1/relationship-managers/{manager_id}",
    ],
)
def test_the_spec_documents_the_409_on_patches_that_read_stored_fields(path):
    spec = create_app(Settings(environment="test")).openapi()
    responses = spec["paths"][path]["patch"]["responses"]
    assert "409" in responses and "conflicts with the stored document" in responses["409"]["description"]
    assert "application/problem+json" in responses["409"]["content"]


def test_a_community_patch_publishes_policy_and_tiers_together():
    """With the audience replaced, its policy and tiers come together: the PATCH alone, published as a `not`."""
    spec = create_app(Settings(environment="test")).openapi()
    valid = jsonschema_rs.validator_for(
        {"$ref": "#/components/schemas/CommunityUpdate", "components": spec["components"]}
    ).is_valid
    audience = {"attr": "age", "op": "gte", "value": 18}
    assert valid({"audience": audience, "audience_policy_key": "loyalty", "audience_tiers": ["core"]})
    assert valid({"audience": audience})
    assert not valid({"audience": audience, "audience_policy_key": "loyalty"})
    assert not valid({"audience": audience, "audience_tiers": ["core"]})
    assert not valid({"audience_policy_key": "loyalty", "audience_tiers": ["core"]})
