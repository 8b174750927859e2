"""Parsing conditions: every malformed shape is rejected with a pointer to the offending node."""

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from app.core.errors import InvalidInput, install_error_handlers
from app.rules.schema import (
    CONDITION_EXAMPLES,
    MAX_DEPTH,
    MAX_NODES,
    AllCondition,
    AlwaysCondition,
    AnyCondition,
    Comparison,
    Condition,
    NotCondition,
    Operator,
    dump_condition,
    iter_comparisons,
    parse_condition,
    referenced_attributes,
)

PREFIX = "/tiers/2/condition"


def error_of(raw, pointer=PREFIX) -> tuple[str, str]:
    with pytest.raises(InvalidInput) as caught:
        parse_condition(raw, pointer)
    field = caught.value.errors[0]
    return field["pointer"], field["detail"]


def nested(depth: int) -> dict:
    """A condition whose deepest node sits at `depth` (the root is at depth 1)."""
    node: dict = {"attr": "aum", "op": "gte", "value": 1}
    for _ in range(depth - 1):
        node = {"not": node}
    return node


def test_parses_every_node_kind_into_typed_models():
    raw = {
        "all": [
            {"attr": "aum", "op": "gte", "value": 500000},
            {
                "any": [
                    {"attr": "tenure_months", "op": "gte", "value": 36},
                    {"attr": "held_categories", "op": "contains", "value": "wealth"},
                ]
            },
            {"not": {"attr": "risk_level", "op": "lt", "value": 2}},
            {"always": True},
        ]
    }
    parsed = parse_condition(raw, PREFIX)
    assert isinstance(parsed, AllCondition)
    first, either, negated, always = parsed.all
    assert first == Comparison(attr="aum", op=Operator.gte, value=500000)
    assert isinstance(either, AnyCondition) and isinstance(negated, NotCondition)
    assert isinstance(always, AlwaysCondition)
    assert dump_condition(parsed) == raw


def test_iterates_leaves_with_their_pointers():
    parsed = parse_condition(CONDITION_EXAMPLES[1])
    assert [p for p, _ in iter_comparisons(parsed, PREFIX)] == [
        f"{PREFIX}/all/0",
        f"{PREFIX}/all/1/any/0",
        f"{PREFIX}/all/1/any/1",
        f"{PREFIX}/all/2/not",
    ]
    assert referenced_attributes(parsed) == {"aum", "tenure_months", "held_categories", "risk_level"}


@pytest.mark.parametrize(
    ("raw", "pointer", "words"),
    [
        ([], PREFIX, "must be a JSON object"),
        ("aum >= 5", PREFIX, "must be a JSON object"),
        ({"all": [{"attr": "aum", "op": "gte", "value": 1}, "x"]}, f"{PREFIX}/all/1", "must be a JSON object"),
        ({"every": []}, PREFIX, "unknown condition shape"),
        ({}, PREFIX, "unknown condition shape"),
        ({"all": [{"attr": "aum", "op": "gte", "value": 1}], "any": []}, PREFIX, "takes no other keys"),
        ({"all": []}, f"{PREFIX}/all", "at least one condition"),
        ({"any": [{"any": []}]}, f"{PREFIX}/any/0/any", "at least one condition"),
        ({"all": {"attr": "aum", "op": "gte", "value": 1}}, f"{PREFIX}/all", "array of conditions"),
        ({"not": [{"always": True}]}, f"{PREFIX}/not", "must be a JSON object"),
        ({"always": False}, f"{PREFIX}/always", "must be true"),
        ({"attr": "aum", "op": "gte"}, PREFIX, "needs 'value'"),
        ({"attr": "aum", "value": 1, "op": "gte", "unit": "EUR"}, f"{PREFIX}/unit", "unknown key 'unit'"),
        ({"op": "gte", "value": 1}, PREFIX, "needs 'attr'"),
        ({"attr": 7, "op": "gte", "value": 1}, f"{PREFIX}/attr", "attribute name"),
        ({"attr": "aum", "op": ">=", "value": 1}, f"{PREFIX}/op", "unknown operator '>='"),
        ({"attr": "aum", "op": None, "value": 1}, f"{PREFIX}/op", "unknown operator"),
        ({"attr": "aum", "op": "gte", "value": None}, f"{PREFIX}/value", "is_null"),
        ({"attr": "aum", "op": "gte", "value": [1, 2]}, f"{PREFIX}/value", "not an array"),
        ({"attr": "aum", "op": "gte", "value": {"amount": 1}}, f"{PREFIX}/value", "not an object"),
        ({"attr": "aum", "op": "gte", "value": float("nan")}, f"{PREFIX}/value", "finite"),
        ({"attr": "segment", "op": "in", "value": []}, f"{PREFIX}/value", "at least one value"),
        ({"attr": "segment", "op": "in", "value": "retail"}, f"{PREFIX}/value", "non-empty array"),
        ({"attr": "segment", "op": "not_in", "value": ["retail", None]}, f"{PREFIX}/value/1", "not null"),
        ({"attr": "held_products", "op": "contains_any", "value": []}, f"{PREFIX}/value", "at least one value"),
        ({"attr": "held_products", "op": "contains_none", "value": [["a"]]}, f"{PREFIX}/value/0", "not an array"),
        ({"attr": "age", "op": "between", "value": [18]}, f"{PREFIX}/value", "[low, high]"),
        ({"attr": "age", "op": "between", "value": 18}, f"{PREFIX}/value", "[low, high]"),
        ({"attr": "age", "op": "between", "value": [18, {}]}, f"{PREFIX}/value/1", "not an object"),
        ({"attr": "age", "op": "is_null", "value": "yes"}, f"{PREFIX}/value", "true or false"),
        (
            {"any": [{"always": True}, {"not": {"attr": "aum", "op": "gtee", "value": 1}}]},
            f"{PREFIX}/any/1/not/op",
            "unknown operator 'gtee'",
        ),
    ],
)
def test_malformed_shapes_point_at_the_offending_node(raw, pointer, words):
    where, detail = error_of(raw)
    assert where == pointer
    assert words in detail


def test_unknown_key_names_are_escaped_in_the_pointer():
    assert error_of({"attr": "aum", "op": "eq", "value": 1, "a/b~c": 1})[0] == f"{PREFIX}/a~1b~0c"


def test_pointer_prefix_is_optional():
    assert error_of({"all": []}, "")[0] == "/all"


def test_depth_limit():
    parse_condition(nested(MAX_DEPTH))
    pointer, detail = error_of(nested(MAX_DEPTH + 1))
    assert pointer == PREFIX + "/not" * MAX_DEPTH
    assert f"more than {MAX_DEPTH} levels" in detail


def test_node_limit():
    leaf = {"attr": "aum", "op": "gte", "value": 1}
    parse_condition({"any": [leaf] * (MAX_NODES - 1)})
    pointer, detail = error_of({"any": [leaf] * MAX_NODES})
    assert pointer == PREFIX
    assert f"more than {MAX_NODES} nodes" in detail


def test_values_keep_their_json_shape():
    parsed = parse_condition({"attr": "aum", "op": "between", "value": [0.5, 10]})
    assert parsed.value == [0.5, 10]
    assert parse_condition({"attr": "vip", "op": "eq", "value": True}).value is True


class TierBody(BaseModel):
    code: str
    condition: Condition


def test_condition_as_a_model_field_reports_the_exact_location():
    good = TierBody.model_validate({"code": "gold", "condition": CONDITION_EXAMPLES[1]})
    assert dump_condition(good.condition) == CONDITION_EXAMPLES[1]
    with pytest.raises(ValueError) as caught:
        TierBody.model_validate(
            {"code": "gold", "condition": {"all": [{"always": True}, {"attr": "aum", "op": "gtee", "value": 1}]}}
        )
    [error] = caught.value.errors()
    assert error["loc"] == ("condition", "all", 1, "op")
    assert "unknown operator 'gtee'" in error["msg"]


async def test_request_body_error_is_problem_json_with_pointer_and_openapi_shows_examples():
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/tiers")
    async def create_tier(body: TierBody) -> dict:
        return dump_condition(body.condition)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ok = await client.post("/tiers", json={"code": "gold", "condition": CONDITION_EXAMPLES[0]})
        bad = await client.post("/tiers", json={"code": "gold", "condition": {"any": [{"all": []}]}})
    assert ok.status_code == 200 and ok.json() == CONDITION_EXAMPLES[0]
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["pointer"] == "/condition/any/0/all"

    schemas = app.openapi()["components"]["schemas"]
    assert {"AllCondition", "AnyCondition", "NotCondition", "AlwaysCondition", "Comparison", "Operator"} <= set(schemas)
    assert schemas["AllCondition"]["examples"][0] == CONDITION_EXAMPLES[0]
    assert set(schemas["Operator"]["enum"]) == {o.value for o in Operator}
