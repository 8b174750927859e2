"""What the spec publishes is what the service accepts (schemathesis' ST202, "schema-valid request rejected", kept
fixed without running it): every value a published pattern or rule allows is taken, and what it refuses is refused.
The ST202 answers that remain are state-dependent and listed in README ("Conventions an integrator can rely on")."""

import itertools
import json
import math
import re
from datetime import date, timedelta
from decimal import Decimal

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from app.core.config import Settings
from app.core.errors import InvalidInput
from app.core.strict import DAY_PATTERN, LATEST_YEAR, TEXT_PATTERN, Day, Timestamp
from app.engagement.schemas.communities import CommunityCreate
from app.engagement.schemas.referrals import ReferralIn
from app.main import create_app
from app.managers.rule_schemas import GoneQuietRule, HolidayName, NearMissRule
from app.products.quota_schemas import QuotaIn
from app.products.schemas import ProductUpdate
from app.reports.router import time_range
from app.reports.schemas import ContributionMarginSet
from app.tiering.assignment.schemas import TierRunCreate
from app.tiering.schemas import TierPolicyVersionCreate
from tests.factories import WEALTH_TIERS

SPEC = create_app(Settings(environment="test")).openapi()
SCHEMAS = SPEC["components"]["schemas"]


def _parameter(path: str, name: str) -> dict:
    return next(p["schema"] for p in SPEC["paths"][path]["get"]["parameters"] if p["name"] == name)


def _pattern(schema: dict) -> str:
    return next(s["pattern"] for s in [schema, *schema.get("anyOf", [])] if "pattern" in s)


def test_the_day_pattern_is_exactly_the_days_that_exist():
    day = date(EARLIEST := 1899, 12, 20)
    while day <= date(LATEST_YEAR + 1, 1, 10):
        assert bool(re.fullmatch(DAY_PATTERN, day.isoformat())) == (EARLIEST < day.year <= LATEST_YEAR), day
        day += timedelta(days=1)
    for year, month, day_of_month in itertools.product((1900, 1996, 2000, 2026, 2100), range(1, 13), (29, 30, 31, 32)):
        text = f"{year}-{month:02d}-{day_of_month:02d}"
        try:
            exists = bool(date.fromisoformat(text))
        except ValueError:
            exists = False
        assert bool(re.fullmatch(DAY_PATTERN, text)) == exists, text
        assert _accepted(TypeAdapter(Day), text) == exists, text


def _accepted(adapter: TypeAdapter, value) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


REPORT_RANGE = _pattern(_parameter("/v1/reports/retention", "from"))
assert REPORT_RANGE == _pattern(_parameter("/v1/reports/retention", "to"))


@settings(max_examples=400, deadline=None)
@given(st.from_regex(REPORT_RANGE, fullmatch=True), st.from_regex(REPORT_RANGE, fullmatch=True))
def test_every_published_report_from_and_to_is_parsed(start: str, end: str):
    """The reports' from/to: a date or a date-time as published (was: 1900-00-00 and 2100-15-94 matched, then 422)."""
    try:
        time_range(start, end)
    except InvalidInput as error:  # the one rule across the two: from before to
        assert str(error.detail) == "from: must be before `to`", (start, end)


@settings(max_examples=400, deadline=None)
@given(st.from_regex(SCHEMAS["ActivityCreate"]["properties"]["starts_at"]["pattern"], fullmatch=True))
def test_every_published_timestamp_is_parsed(value: str):
    assert _accepted(TypeAdapter(Timestamp), value), value


@pytest.mark.parametrize(
    ("model", "field", "outside"),
    [
        (ProductUpdate, "lever", ["100.0001", "101", "0", "0.0000", "-1"]),
        (ContributionMarginSet, "margin_rate", ["1.000001", "-1.5", "2", "-2"]),
    ],
)
def test_published_decimal_bounds_are_the_enforced_ones(model: type[BaseModel], field: str, outside: list[str]):
    schema = model.model_json_schema()["properties"][field]
    pattern = _pattern(schema)

    @settings(max_examples=300, deadline=None)
    @given(st.from_regex(pattern, fullmatch=True))
    def inside_is_taken(value: str):
        model.model_validate({field: value})

    inside_is_taken()
    for value in outside:
        assert not re.fullmatch(pattern, value), value
        with pytest.raises(ValidationError):
            model.model_validate({field: value})


@pytest.mark.parametrize(
    ("model", "field", "base"),
    [
        (NearMissRule, "share", {}),
        (GoneQuietRule, "min_churn_risk", {}),
    ],
)
def test_published_decimal_numbers_are_the_enforced_ones(model: type[BaseModel], field: str, base: dict):
    """A JSON number of any precision is rounded into its NUMERIC column (half away from zero), so the number form's
    published bounds (half a unit outside the decimal bounds) are exactly the numbers taken: at the edges, around
    them, and for floats drawn between."""
    number = next(s for s in model.model_json_schema()["properties"][field]["anyOf"] if s.get("type") == "number")
    validator = jsonschema_rs.validator_for(number)
    edges = [number.get(k) for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")]
    probes = [x for e in edges if e is not None for x in (e, math.nextafter(e, -1), math.nextafter(e, 2))]

    @settings(max_examples=300, deadline=None)
    @given(st.floats(min_value=-0.01, max_value=1.01, allow_nan=False) | st.sampled_from(probes))
    def same_answer(value: float):
        taken = _accepted(TypeAdapter(model), {**base, field: value})
        assert taken == validator.is_valid(value), (value, taken)
        if taken:
            stored = getattr(model.model_validate({**base, field: value}), field)
            assert stored.as_tuple().exponent == -4 and abs(float(stored) - value) <= 0.00005 + 1e-12, stored

    same_answer()
    assert getattr(model.model_validate({**base, field: 0.46804632981436345}), field) == Decimal("0.4680")


EXAMPLE_COMMUNITY = CommunityCreate.model_json_schema()["examples"][0]
BASE_REFERRAL = {"event_id": "r-1", "referrer_customer_id": "C1", "referred_at": "2026-01-01T00:00:00Z"}
ABSENT, NULL = {}, None
RULES = [  # a model, a body valid but for the two fields, and each field's states (absent, null when nullable, values)
    ("TierRunCreate", TierRunCreate, {}, {"policy_key": [ABSENT, NULL, "wealth"], "all": [ABSENT, True, False]}),
    ("QuotaIn", QuotaIn, {"period": "month"}, {"cap_count": [ABSENT, NULL, 5], "cap_amount": [ABSENT, NULL, "10.00"]}),
    (
        "ReferralIn",
        ReferralIn,
        BASE_REFERRAL,
        {"referee_customer_id": [ABSENT, NULL, "C2"], "referral_code": [ABSENT, NULL, "FRIEND-7QX2"]},
    ),
    (
        "TierPolicyVersionCreate",
        TierPolicyVersionCreate,
        {},
        {"tiers": [ABSENT, NULL, WEALTH_TIERS], "copy_from": [ABSENT, NULL, 1]},
    ),
    (
        "CommunityCreate",
        CommunityCreate,
        {k: v for k, v in EXAMPLE_COMMUNITY.items() if not k.startswith("audience_")} | {"audience": {"always": True}},
        {"audience_policy_key": [ABSENT, NULL, "wealth"], "audience_tiers": [ABSENT, [], ["gold"]]},
    ),
]


@pytest.mark.parametrize(("name", "model", "base", "states"), RULES, ids=[rule[0] for rule in RULES])
def test_published_rules_across_fields_are_the_validators(name, model, base, states):
    """Each combination of the two fields' states: the published rule (a `not` beside the properties) accepts exactly
    the bodies the model's validator accepts."""
    rule = jsonschema_rs.validator_for({"not": SCHEMAS[name]["not"]})
    whole = jsonschema_rs.validator_for({**SCHEMAS[name], "components": SPEC["components"]})
    for combination in itertools.product(*states.values()):
        body = base | {field: value for field, value in zip(states, combination, strict=True) if value is not ABSENT}
        try:
            model.model_validate(body)
            accepted = True
        except ValidationError:
            accepted = False
        assert rule.is_valid(body) == accepted, body
        assert whole.is_valid(body) == accepted, body


def test_every_map_with_key_patterns_refuses_other_keys():
    """A dict keyed by language tags publishes patternProperties; without additionalProperties false any other key
    (such as "") would be schema-valid and refused."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "patternProperties" in node:
                found.append(node)
                assert node.get("additionalProperties") is False, node
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(SPEC)
    assert len(found) >= 3


@pytest.mark.parametrize("path", ["/v1/reports/churn-models", "/v1/ranker-models", "/v1/api-keys"])
async def test_every_published_cursor_is_taken(client, as_role, path):
    """A cursor of 18 digits matches the published pattern: past an int4 column's range it is past every row, not a
    database range error (was 422 "value out of range" on the lists keyed by an int4 version)."""
    assert re.fullmatch(_pattern(_parameter(path, "cursor")) if path != "/v1/api-keys" else r".*", "9" * 18)
    for cursor in ("9" * 18, "2147483648", "33059038901"):
        response = await client.get(path, params={"cursor": cursor}, headers=as_role("admin"))
        assert response.status_code == 200, response.text
        assert response.json()["next_cursor"] is None


@settings(max_examples=300, deadline=None)
@given(st.from_regex(TEXT_PATTERN, fullmatch=True).filter(lambda text: len(text) <= 200))
def test_published_names_are_taken_and_nul_is_not_published(text: str):
    """Names (a policy's, a holiday's, a manager's...) publish TEXT_PATTERN: what it allows is taken; a NUL, which
    Postgres text cannot store, is refused by the pattern itself (was: a 422 from the database)."""
    assert _accepted(TypeAdapter(HolidayName), text), text
    assert not re.fullmatch(TEXT_PATTERN, text + "\x00") and not _accepted(TypeAdapter(HolidayName), text + "\x00")


def test_a_name_is_checked_as_sent_then_stored_stripped():
    """maxLength is the sent text's (JSON Schema's): whitespace around a name counts against it, as the fuzzer read
    it (schemathesis' ST201: a 201-character name with a leading space was taken, stripped to 200), and is dropped
    from what is stored."""
    names = TypeAdapter(HolidayName)
    assert names.validate_python("  Spring Festival ") == "Spring Festival"
    assert names.validate_python(" " + "x" * 199) == "x" * 199
    for refused in (" " + "x" * 200, "x" * 200 + "\t", "   "):
        assert not _accepted(names, refused), refused
    assert all(SCHEMAS[name]["properties"]["name"]["maxLength"] == 200 for name in ("CommunityCreate", "ProductCreate"))


def _unbounded_strings(schema: dict, where: str, seen: set[str]) -> list[str]:
    """Strings of a request body that state neither a pattern, an enum, a format nor a constant."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return [] if name in seen or seen.add(name) else _unbounded_strings(SCHEMAS[name], name, seen)
    found = []
    if schema.get("type") == "string" and not {"pattern", "enum", "format", "const"} & set(schema):
        found.append(where)
    for part in [*schema.get("anyOf", []), *schema.get("oneOf", []), *schema.get("allOf", [])]:
        found += _unbounded_strings(part, where, seen)
    for name, part in schema.get("properties", {}).items():
        found += _unbounded_strings(part, f"{where}.{name}", seen)
    for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(schema.get(key), dict):
            found += _unbounded_strings(schema[key], where + suffix, seen)
    for pattern, part in schema.get("patternProperties", {}).items():  # maps keyed by language tags
        found += _unbounded_strings(part, f"{where}{{{pattern}}}", seen)
    for i, part in enumerate(schema.get("prefixItems", [])):
        found += _unbounded_strings(part, f"{where}[{i}]", seen)
    return found


def test_every_string_a_request_body_takes_states_what_it_takes():
    """Postgres text cannot store NUL: a body's string publishes a pattern that refuses it (NO_NUL_PATTERN or a
    stricter one), an enum or a format, so a schema-valid body is never refused by the database (schemathesis found
    a survey comment, a policy's description... refused whole, with no field named)."""
    seen: set[str] = set()
    found = []
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                found += _unbounded_strings(content.get("schema", {}), f"{method} {path}", seen)
    assert found == []


def test_a_body_integer_bound_is_one_a_double_holds_and_writes_back():
    """bigint's top (2**63 - 1) read as a double is 2**63, past bigint; the double 2**63 - 1024 is written back as
    9223372036854775000, past itself: schemathesis sent both as within the bound then published, and was refused.
    The bound is 9 * 10**18: a double written exactly, every double at or below it is taken read either way (as
    written by a generator's shortest repr, or as the double), and the doubles past it are refused."""
    published = SCHEMAS["QuotaIn"]["properties"]["cap_count"]["anyOf"][0]["maximum"]
    maximum = int(published)
    assert published == maximum == 9 * 10**18 and float(maximum) == maximum and repr(float(maximum)) == "9e+18"
    below = math.nextafter(float(maximum), 0.0)
    for taken in (maximum, float(maximum), below, int(float(repr(below))), json.loads(json.dumps(below))):
        QuotaIn.model_validate({"period": "month", "cap_count": taken})
    for refused in (maximum + 1, math.nextafter(float(maximum), math.inf), 2.0**63):
        assert not jsonschema_rs.validator_for({"maximum": maximum}).is_valid(refused)
        with pytest.raises(ValidationError):
            QuotaIn.model_validate({"period": "month", "cap_count": refused})


def test_the_take_up_reports_benefit_code_publishes_that_nul_is_refused():
    """schemathesis sent a NUL in `benefit_code` (its schema allowed it) and the database refused the whole request
    (st17c run 15): it publishes NO_NUL_PATTERN like its `policy_key` beside it."""
    parameters = SPEC["paths"]["/v1/reports/benefit-take-up"]["get"]["parameters"]
    code = next(p for p in parameters if p["name"] == "benefit_code")["schema"]
    assert not jsonschema_rs.validator_for(code).is_valid("a\x00b") and jsonschema_rs.validator_for(code).is_valid("x")
